"""The offline `template` backend: seeded, deterministic topic alternatives and dialogues composed
from hand-written banks. It stands in for an LLM on a laptop and in tests; its output is always
labelled backend/model "template", never presented as LLM output."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from itertools import islice

from emoneurons.emotions import EMOTIONS

TEMPLATE = "template"

# ---------------------------------------------------------------------------------------------
# Topic alternatives: a bank of category -> members; a topic found in (or sharing a content word
# with) a category gets another member; otherwise a modifier is composed with its head noun.

TOPIC_BANK: dict[str, tuple[str, ...]] = {
    "pets": ("Dogs", "Cats", "Hamsters", "Parrots", "Rabbits", "Goldfish", "Guinea Pigs", "Ferrets", "Kittens", "Puppies", "Budgies", "Pet Care", "Dog Training", "Dog Grooming", "Cat Grooming", "Pet Adoption", "Dog Treats", "Dog Food", "Bearded Dragons", "Horse Riding"),
    "wildlife": ("Red Pandas", "Dolphins", "Whales", "Elephants", "Owls", "Wolves", "Sharks", "Octopuses", "Penguins", "Butterflies", "Bats", "Foxes", "Otters", "Jellyfish", "Coral Reefs", "Birdwatching", "Hummingbirds", "Sea Turtles", "Honeybees", "Ocean Life", "Bee Life", "Siphonophorae", "Purple Martins", "Turtles", "Dangerous Animals"),
    "dishes": ("Sushi", "Pizza", "Hummus", "Spaghetti", "Ramen", "Tacos", "Dumplings", "Curry", "Paella", "Burritos", "Falafel", "Lasagna", "Bagels", "Pancakes", "Croissants", "Dim Sum", "Barbecue", "Sandwiches", "Hamburgers", "Pho", "Risotto", "Italian Food", "Filipino Food", "Thai Food", "Breakfast Food"),
    "cooking": ("Cooking", "Baking", "Grilling", "Meal Prep", "Cheese Making", "Bread Baking", "Air Fryer Cooking", "Fermentation", "Pickling", "Canning", "Home Brewing", "Cake Decorating", "Sourdough", "Slow Cooking", "Recipes", "Pasta Recipes", "Cuisine", "Smoking Meat"),
    "produce": ("Vegetables", "Fruits", "Nuts", "Berries", "Mushrooms", "Herbs", "Citrus", "Avocados", "Tomatoes", "Potatoes", "Legumes", "Leafy Greens", "Apples", "Mangoes"),
    "sweets": ("Candy", "Cotton Candy", "Chocolate", "Ice Cream", "Cupcakes", "Donuts", "Gelato", "Fudge", "Macarons", "Cheesecake", "Brownies", "Lollipops"),
    "drinks": ("Wine", "Cocktails", "Coffee", "Tea", "Craft Beer", "Whiskey", "Espresso", "Smoothies", "Kombucha", "Cider", "Sake", "Iced Tea", "Lemonade", "Wine Tasting", "Mocktails", "Hot Chocolate"),
    "crafts": ("Basket Making", "Knitting", "Crochet", "Quilting", "Embroidery", "Pottery", "Loom Weaving", "Woodcarving", "Candle Making", "Soap Making", "Origami", "Calligraphy", "Scrapbooking", "Jewelry Making", "Sewing", "Macrame", "Beadwork", "Leatherwork", "Sewing Machines", "Crafts"),
    "gardening": ("Gardening", "Herb Garden", "Growing Tomatoes", "Composting", "Beekeeping", "Bonsai", "Cacti", "Houseplants", "Orchids", "Landscaping", "Lawn Care", "Succulents", "Rose Pruning", "Growing Pothos", "Greenhouses", "Vegetable Gardens", "Flowers", "Planting Bulbs", "Hydroponics"),
    "genres": ("Americana Music", "Classic Rock", "Reggae Music", "Jazz", "Blues", "Bluegrass", "Country Music", "Folk Music", "Hip Hop", "Heavy Metal", "Punk Rock", "Baroque Music", "Choral Music", "Gospel", "Soul Music", "Opera", "Techno", "K-pop", "Death Metal", "Rock Music", "Music"),
    "instruments": ("Piano", "Violin", "Cello", "Guitar", "Drums", "Saxophone", "Trumpet", "Flute", "Harp", "Ukulele", "Banjo", "Accordion", "Clarinet", "Harmonica", "Mandolin", "Organ", "Musical Instruments", "Synthesizers"),
    "musicians": ("Nine Inch Nails", "Bob Dylan", "Taylor Swift", "The Beatles", "Radiohead", "Johnny Cash", "Joni Mitchell", "Bruce Springsteen", "Nirvana", "David Bowie", "Fleetwood Mac", "Pearl Jam", "Aretha Franklin", "Dolly Parton", "Prince"),
    "film": ("Steven Spielberg", "Martin Scorsese", "Alfred Hitchcock", "Stanley Kubrick", "Quentin Tarantino", "Christopher Nolan", "Ken Burns", "Greta Gerwig", "Akira Kurosawa", "French Cinema", "Film Noir", "Documentaries", "Silent Films", "Westerns", "Movies", "Horror Movies", "Indie Films", "Film Festivals"),
    "franchises": ("The Outlander Series", "The Simpsons", "Star Trek", "Star Wars", "Game of Thrones", "Rick and Morty", "Doctor Who", "Breaking Bad", "The Sopranos", "Downton Abbey", "Sex and the City", "The Office", "Futurama", "Pokemon", "Hello Kitty", "Harry Potter", "Lord of the Rings", "Twin Peaks"),
    "games": ("Video Games", "Retro Video Games", "Playstation 5", "Computer Games", "Magic the Gathering", "Chess", "Board Games", "Poker", "Dungeons and Dragons", "Nintendo Switch", "Minecraft", "Crossword Puzzles", "Pinball", "Pool Tables", "Tetris", "Bowling", "Jigsaw Puzzles", "Card Games"),
    "sports": ("Soccer", "Baseball", "Football", "Basketball", "Cricket", "Tennis", "Rugby", "Golf", "Hockey", "Volleyball", "NCAA Football", "Boxing", "Wrestling", "Badminton", "Table Tennis", "Lacrosse", "Formula One", "Softball", "Curling", "Fencing"),
    "outdoors": ("Biking", "Mountain Biking", "Hiking", "Rock Climbing", "Paddle Boarding", "Kayaking", "Surfing", "Skiing", "Snowboarding", "Camping", "Trail Running", "Fishing", "Sailing", "Canoeing", "Backpacking", "Camping Gear", "Scuba Diving"),
    "fitness": ("Running", "Weightlifting", "Calisthenics", "Yoga", "Pilates", "Swimming", "Stretching", "Fitness", "Exercise", "Marathons", "CrossFit", "Spin Classes", "Aerobics", "Powerlifting", "Martial Arts", "Kickboxing"),
    "writers": ("Virginia Woolf", "Anthony Trollope", "F. Scott Fitzgerald", "William Shakespeare", "Anne Sexton", "John Keats", "Gerard Manley Hopkins", "Jane Austen", "Charles Dickens", "Emily Dickinson", "Sylvia Plath", "Ernest Hemingway", "Leo Tolstoy", "Toni Morrison", "James Joyce", "George Eliot", "Walt Whitman", "Mark Twain", "Oscar Wilde", "Zadie Smith"),
    "thinkers": ("Rollo May", "Soren Kierkegaard", "Friedrich Nietzsche", "Karl Marx", "Carl Jung", "Sigmund Freud", "Viktor Frankl", "Jean-Paul Sartre", "Simone de Beauvoir", "Albert Camus", "Plato", "Aristotle", "Hannah Arendt", "Michel Foucault", "Carl Rogers", "Abraham Maslow", "Immanuel Kant", "Erich Fromm"),
    "ideas": ("Romanticism", "Feminism", "Post-structuralism", "Social Democracy", "Existentialism", "Modernism", "Impressionism", "Transcendentalism", "Stoicism", "Humanism", "Surrealism", "Minimalism", "The Enlightenment", "Realism", "Socialism", "Utilitarianism", "Gay Marriage", "Civil Rights"),
    "psychology": ("Psychology", "Jungian Psychology", "Existential Psychology", "Cognitive Therapy", "Behaviorism", "Psychoanalysis", "Positive Psychology", "Mindfulness", "Child Psychology", "Social Psychology", "Meditation", "Group Therapy"),
    "places": ("Jamaica", "Ireland", "Paris", "New York", "Los Angeles", "Chicago", "London", "Tokyo", "Rome", "Barcelona", "Iceland", "Portugal", "Mexico", "Greece", "Scotland", "Nova Scotia", "Maryland", "Cuba", "Kenya", "Peru", "New Zealand", "Morocco", "Vietnam", "Norway", "Lisbon", "Vienna", "Havana"),
    "institutions": ("U.S. Senate", "European Union", "United Nations", "NATO", "U.S. Presidents", "Supreme Court", "House of Representatives", "Parliament", "World Bank", "Congress", "Presidency", "Presidents of France", "Politics", "Electoral College", "City Council", "Red Cross", "G7", "Prime Ministers"),
    "history": ("War of Roses", "The American Revolution", "American Civil War", "Second World War", "World War I", "The Crusades", "Pacific Theater", "Vichy France", "The Cold War", "French Revolution", "Industrial Revolution", "Titanic", "The Renaissance", "Roman Empire", "Soviet Union", "Ottoman Empire", "Space Race", "Napoleonic Wars", "History", "Ancient Egypt"),
    "royals": ("Queen Victoria", "King Henry V", "Sacagawea", "Martin Luther", "Napoleon", "Cleopatra", "Abraham Lincoln", "Joan of Arc", "Elizabeth I", "Winston Churchill", "Catherine the Great", "Julius Caesar", "Genghis Khan", "Frederick Douglass", "Marie Curie"),
    "companies": ("Apple Company", "Microsoft", "Google", "Facebook", "Amazon", "Tesla", "Samsung", "IBM", "Netflix", "Walmart", "Nintendo", "Sony", "Intel", "Instagram", "YouTube", "Levi's Jeans", "Ford Vehicles", "Coca-Cola", "IKEA"),
    "tycoons": ("Elon Musk", "Steve Jobs", "Bill Gates", "Mark Zuckerberg", "Jeff Bezos", "Ada Lovelace", "Alan Turing", "Warren Buffett", "Oprah Winfrey", "Walt Disney"),
    "computing": ("Computers", "Computer Parts", "Keyboards", "Programming Languages", "Phones", "Mobile Phones", "Laptops", "Tablets", "Smartwatches", "Graphics Cards", "Routers", "Printers", "Studio Monitors", "Headphones", "Screen Protectors", "Smart TVs", "Operating Systems", "Cloud Storage", "Computer Repair", "Photo Editing", "Electronics"),
    "home": ("Home Repair", "Kitchen Remodel", "Reflooring", "Painting Walls", "Carpet Cleaning", "Laundry", "Laundry Detergents", "Gravel Driveways", "Outdoor Carpentry", "Window Restoration", "Plumbing", "Roofing", "Tiling", "Insulation", "Woodworking", "Furniture Restoration", "Decluttering", "Interior Design", "Energy Saving"),
    "health": ("Asthma", "Skin Cancer", "Cancer", "Dyslexia", "Depression", "Dry Eyes", "Toenail Fungus", "Gynecology", "Medical Advice", "Health", "Diabetes", "Migraines", "Allergies", "Insomnia", "Arthritis", "Physical Therapy", "Vaccines", "Dentistry", "Life Expectancy", "Body Organs", "Healthy Eating", "Nutrition"),
    "money": ("Investing", "Stock Market", "Stocks", "Stock Trading", "Saving", "Mortgages", "Financial Independence", "Side Hustles", "Stock Prices", "Cryptocurrency", "Retirement Plans", "Budgeting", "Index Funds", "Real Estate", "Credit Cards", "Taxes", "Bonds"),
    "family": ("Potty Training", "Babies", "Child Discipline", "Family Issues", "Family Relations", "Healthy Marriage", "Anniversaries", "Picking Schools", "Kitten Care", "Parenting", "Toddlers", "Grandparents", "Sibling Rivalry", "Weddings", "Homeschooling", "Bedtime Routines", "Adoption"),
    "science": ("Quantum Physics", "Astrobiology", "Planets", "Solar System", "Meteorology", "Geography", "Algebra", "Black Holes", "Astronomy", "Chemistry", "Genetics", "Geology", "Volcanoes", "Botany", "Evolution", "Neuroscience", "Marine Biology", "Climate Change", "Robotics", "Mars", "Calculus"),
    "travel": ("Amusement Parks", "Holidays", "Vacation Destinations", "Caribbean Holidays", "Mexican Resorts", "Beaches", "Islands", "Travel", "Museums", "American Sights", "National Parks", "Cruises", "Road Trips", "Theme Parks", "Water Parks", "Zoos", "Aquariums", "Ski Resorts", "Hot Springs", "Castles"),
    "style": ("Lingerie", "Braids", "Skincare", "Moisturizer", "Lip Balm", "Beauty", "Clothes", "Sneakers", "Perfume", "Nail Art", "Makeup", "Hats", "Handbags", "Vintage Clothing", "Sunglasses", "Hairstyles", "Tattoos", "Wristwatches", "Denim"),
    "art": ("Painting", "Old Masters", "Artists", "Paint Brushes", "Watercolor", "Oil Painting", "Sculpture", "Photography", "Sketching", "Street Art", "Ceramics", "Printmaking", "Art Galleries", "Murals", "Comics", "Animation", "Anime", "Manga"),
    "dance": ("Dance Crazes", "Ballet", "Salsa", "Tango", "Tap Dance", "Ballroom Dancing", "Swing Dance", "Line Dancing", "Breakdancing", "Flamenco", "Contemporary Dance", "Square Dancing"),
    "books": ("Books", "Literature", "Russian Literature", "Book Recommendations", "Poetry", "Novels", "Short Stories", "Science Fiction", "Fantasy Novels", "Mystery Novels", "Graphic Novels", "Audiobooks", "Libraries", "Book Clubs", "Plato's Republic", "Greek Mythology", "Egyptian Mythology", "Norse Mythology", "Fairy Tales"),
    "vehicles": ("Cars", "Car Maintenance", "Automotive Parts", "Jeep Repair", "Electric Cars", "Motorcycles", "Pickup Trucks", "Vintage Cars", "Car Racing", "Car Washes", "Tire Care", "Hyperloop", "Trains", "Bicycles", "Scooters", "Road Safety"),
    "media": ("YouTube Tutorials", "Youtubers", "Social Media", "Podcasts", "Blogs", "TikTok", "Streaming Services", "TV", "TV Shows", "Shows", "Reality TV", "Sitcoms", "Talk Shows", "Late-night TV", "Movie Casts", "Collectible DVDs", "Game Shows"),
    "environment": ("Environment", "Recycling", "Solar Power", "Plastics", "Wind Energy", "Electric Vehicles", "Deforestation", "Water Conservation", "Air Pollution", "Renewable Energy", "Zero Waste", "Climate Policy"),
    "education": ("College Degrees", "Harvard University", "Yale University", "Stanford University", "Oxford University", "Community College", "Online Courses", "Scholarships", "Student Loans", "Languages", "Learning Spanish", "Sign Language", "Linguistics", "Graduate School", "Study Abroad"),
    "business": ("Business Cards", "Marketing", "Advertising", "Branding", "Public Relations", "Sales", "Networking", "Job Interviews", "Resumes", "Startups", "Entrepreneurship", "Online Business", "Freelancing"),
    "celebrations": ("Christmas", "Thanksgiving", "Halloween", "Easter", "New Year's Eve", "Hanukkah", "Diwali", "Birthdays", "Medals", "Awards", "Graduations", "Baby Showers"),
    "humour": ("Jokes", "Stand-up Comedy", "Puns", "Riddles", "Improv", "Sketch Comedy", "Cartoons", "Satire"),
}

# Extra content words that point to a category when the topic itself is not in the bank.
TOPIC_KEYWORDS: dict[str, tuple[str, ...]] = {
    "pets": ("dog", "puppy", "cat", "kitten", "pet", "breed", "hypoallergenic", "scentwork", "akc"),
    "wildlife": ("animal", "bird", "fish", "ocean", "marine", "wildlife", "insect", "martin"),
    "dishes": ("food", "dish", "sandwich", "filling", "burger", "meal", "dinner"),
    "cooking": ("cook", "cooking", "bake", "baking", "recipe", "kitchen", "fryer", "chef"),
    "drinks": ("drink", "beer", "tasting", "tea", "brew"),
    "crafts": ("craft", "weave", "weaving", "knit", "loom", "sew", "stitch", "yarn", "basket"),
    "gardening": ("garden", "grow", "growing", "plant", "planting", "flower", "seed", "tree", "lawn", "grass", "cactus"),
    "genres": ("music", "song", "band", "concert", "metal", "rock", "album"),
    "instruments": ("instrument",),
    "film": ("movie", "film", "cinema", "director"),
    "games": ("game", "gaming", "playstation", "xbox", "console", "puzzle"),
    "sports": ("sport", "team", "league", "ball", "tips"),
    "outdoors": ("outdoor", "trail", "mountain", "paddle", "camp", "gear"),
    "fitness": ("workout", "gym", "exercise", "exercising", "training"),
    "writers": ("poet", "poetry", "novelist", "author"),
    "ideas": ("ism", "movement", "marriage", "rights", "democracy"),
    "psychology": ("psychology", "therapy", "mind", "mental"),
    "places": ("city", "country", "france", "america", "island", "jamaican", "symbols"),
    "institutions": ("senate", "president", "presidents", "government", "union", "nations", "political", "election"),
    "history": ("war", "revolution", "empire", "battle", "ancient", "king", "queen"),
    "companies": ("company", "brand", "jeans", "vehicles", "corporation", "inc"),
    "computing": ("computer", "phone", "screen", "software", "app", "applications", "install", "tv", "electronic", "electronics", "lightroom", "photoshop", "keyboard", "monitor"),
    "home": ("home", "house", "room", "floor", "wall", "walls", "carpet", "laundry", "repair", "window", "driveway", "remodel", "cleaning", "energy"),
    "health": ("health", "healthy", "disease", "medical", "cancer", "skin", "eye", "eyes", "fungus", "organ", "doctor", "eating", "tobacco"),
    "money": ("money", "invest", "investing", "stock", "stocks", "financial", "finance", "mortgage", "mortages", "bank", "saving", "prices"),
    "family": ("family", "child", "children", "kid", "kids", "baby", "babies", "parent", "marriage", "marraige", "school", "schools", "anniversary"),
    "science": ("physics", "science", "planet", "planets", "solar", "space", "biology", "math"),
    "travel": ("travel", "vacation", "holiday", "holidays", "resort", "resorts", "beach", "park", "parks", "museum", "museums", "trip", "sights", "destinations"),
    "style": ("beauty", "fashion", "hair", "skin", "lip", "clothes", "clothing", "wear", "balm"),
    "art": ("art", "artist", "paint", "painting", "brush", "masters", "drawing"),
    "dance": ("dance", "dancing"),
    "books": ("book", "books", "literature", "novel", "mythology", "story", "republic"),
    "vehicles": ("car", "cars", "vehicle", "jeep", "automotive", "truck", "driving", "loop"),
    "media": ("youtube", "video", "tutorial", "show", "shows", "channel", "media", "dvd", "dvds", "cast"),
    "environment": ("climate", "environment", "plastic", "recycle", "pollution", "changes"),
    "education": ("college", "university", "degree", "degrees", "language", "languages", "course", "learning"),
    "business": ("business", "cards", "marketing", "job", "career", "online", "community", "improve"),
    "celebrations": ("celebration", "party", "festival"),
    "humour": ("joke", "comedy", "funny", "humor", "humour"),
}

# Categories of names ("Emily Dickinson", "Kenya"): a modifier does not compose with a name, so
# their compositions use these common nouns instead ("Modern Poetry", "Coastal Towns").
NAME_CATEGORY_NOUNS: dict[str, tuple[str, ...]] = {
    "musicians": ("Bands", "Albums", "Concerts", "Songwriters", "Tours"),
    "film": ("Films", "Directors", "Cinema", "Screenplays"),
    "franchises": ("Series", "Sagas", "Sitcoms", "Cartoons", "Fandoms"),
    "writers": ("Poetry", "Novels", "Memoirs", "Authors", "Essays"),
    "thinkers": ("Philosophy", "Ethics", "Philosophers", "Theories"),
    "places": ("Cities", "Towns", "Islands", "Capitals", "Coastlines"),
    "institutions": ("Councils", "Assemblies", "Elections", "Governments"),
    "royals": ("Monarchs", "Dynasties", "Leaders", "Royals"),
    "companies": ("Brands", "Companies", "Startups", "Retailers"),
    "tycoons": ("Entrepreneurs", "Inventors", "Billionaires", "Founders"),
}

MODIFIERS: tuple[str, ...] = (
    "modern", "classic", "vintage", "local", "amateur", "urban", "rural", "homemade", "traditional",
    "digital", "indoor", "outdoor", "seasonal", "community", "regional", "historic", "independent",
    "global", "budget", "family", "weekend", "beginner", "competitive", "experimental", "popular",
    "everyday", "miniature", "artisan", "youth", "public",
)

_STOPWORDS = frozenset(
    "a an the of in on at to for and or with about from by into my our your their how what why "
    "is are be i would like discuss making make making most old new best good".split()
)


def seeded_rng(*parts: object) -> random.Random:
    """A random.Random seeded by a stable hash of `parts` (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


@lru_cache(maxsize=1)
def _indexes() -> tuple[dict[str, str], dict[str, str]]:
    """(member key -> category, content word -> category); the first category listed wins."""
    members: dict[str, str] = {}
    words: dict[str, str] = {}
    for category, names in TOPIC_BANK.items():
        for name in names:
            members.setdefault(" ".join(_words(name)), category)
    for category, extra in TOPIC_KEYWORDS.items():
        for word in extra:
            words.setdefault(_singular(word), category)
    for category, names in TOPIC_BANK.items():
        for name in names:
            for word in _words(name):
                if word not in _STOPWORDS and len(word) > 2:
                    words.setdefault(_singular(word), category)
    return members, words


def topic_category(topic: str) -> str | None:
    """The bank category of a topic: its own entry, else the first content word that names one."""
    members, words = _indexes()
    tokens = _words(topic)
    if " ".join(tokens) in members:
        return members[" ".join(tokens)]
    # The last content word is usually the head noun ("making dog treats" -> treats, dog).
    for word in reversed(tokens):
        if word not in _STOPWORDS and _singular(word) in words:
            return words[_singular(word)]
    return None


def _head_noun(topic: str) -> str:
    tokens = re.findall(r"[A-Za-z0-9][A-Za-z0-9'-]*", topic)
    content = [t for t in tokens if t.lower() not in _STOPWORDS] or tokens or ["topic"]
    return content[-1]


def alternative_candidates(topic: str, seed: int) -> Iterator[str]:
    """Every alternative the template would offer for `topic`, in the seeded order it offers them:
    other members of the topic's category, then a modifier with the topic's head noun, then a
    modifier with the head noun of a category member ("Vintage Pottery")."""
    rng = seeded_rng("augment", seed, " ".join(_words(topic)))
    own = " ".join(_words(topic))
    category = topic_category(topic)
    related = [m for m in TOPIC_BANK.get(category, ()) if " ".join(_words(m)) != own]
    rng.shuffle(related)
    yield from related
    capital = topic[:1].isupper()
    modifiers = [m.capitalize() if capital else m for m in MODIFIERS if m not in topic.lower().split()]
    nouns = NAME_CATEGORY_NOUNS.get(category or "")
    heads = list(nouns) if nouns else [_head_noun(topic)] + [_head_noun(m) for m in related]
    seen = set()
    for head in dict.fromkeys(heads):
        for modifier in rng.sample(modifiers, len(modifiers)):
            text = f"{modifier} {head if capital or nouns is None else head.lower()}"
            if text.lower() not in seen and text.lower() != topic.lower():
                seen.add(text.lower())
                yield text


def template_alternative(topic: str, attempt: int, seed: int, taken: Callable[[str], bool] | None = None) -> str | None:
    """The attempt-th seeded alternative to `topic` (a re-ask gets the next one), skipping the
    candidates `taken` says are already in the pool, as an LLM shown the existing topics would."""
    free = (c for c in alternative_candidates(topic, seed) if taken is None or not taken(c))
    return next(islice(free, attempt, None), None)


# ---------------------------------------------------------------------------------------------
# Dialogues. A dialogue = a shape (an emotion-neutral frame: who tells, how it opens) filled with
# emotion-specific lines: the event, reactions, details and a closing. The emotion is carried by
# situations, verbs and exclamations; no line names an emotion (FORBIDDEN_WORDS).

FORBIDDEN_WORDS = frozenset(
    EMOTIONS + ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "surprising")
)

# Where the topic sits in the story; every context names it, so the event line mentions it.
CONTEXTS: tuple[str, ...] = (
    "the workshop on {topic}", "the evening class on {topic}", "our club night on {topic}",
    "my talk on {topic}", "the exhibition about {topic}", "the fundraiser for {topic}",
    "the contest about {topic}", "the meetup about {topic}", "the weekend fair on {topic}",
    "the conference on {topic}", "the open house on {topic}", "the community event on {topic}",
    "the charity evening for {topic}", "the retreat about {topic}",
)
PEOPLE: tuple[str, ...] = (
    "my sister", "my brother", "our neighbour", "my boss", "Maya", "Daniel", "the organiser",
    "my cousin", "my old roommate", "the landlord", "a colleague", "my best friend",
)

# Shapes: (openers with the teller's cue, who tells the story). `{ctx}` is the seeded context.
SHAPES: dict[str, dict[str, object]] = {
    "news": {
        "teller": "A",
        "openers": (
            ("Have you heard the latest about {topic}?", "No, nothing yet. What's going on?"),
            ("You won't guess what came through about {topic} this morning.", "Go on, tell me."),
            ("Got a minute? There's news about {topic}.", "Sure, what is it?"),
        ),
    },
    "complaint": {
        "teller": "A",
        "openers": (
            ("Can I talk to you about {topic} for a second?", "Of course. What's up?"),
            ("I need to get something off my chest about {topic}.", "I'm listening."),
            ("So, {topic}. We need to talk about it.", "Alright, what happened?"),
        ),
    },
    "memory": {
        "teller": "B",
        "openers": (
            ("Whatever happened with you and {topic}? You never told me.", "Oh, {topic}. Let me tell you."),
            ("I was thinking about {topic} earlier and remembered you were involved.", "Yes, and I still think about it."),
            ("Remember last spring, when you were so into {topic}?", "How could I not remember."),
        ),
    },
    "plan": {
        "teller": "B",
        "openers": (
            ("So how did your big plan for {topic} go?", "Not the way I pictured it, that's for sure."),
            ("Wasn't this the big weekend for {topic}?", "It was. Sit down, there's a lot."),
            ("You had everything lined up for {topic}, right?", "I did. Then the day came."),
        ),
    },
    "discovery": {
        "teller": "A",
        "openers": (
            ("Come look at this, it's about {topic}.", "What am I looking at?"),
            ("I was sorting through old boxes and found something to do with {topic}.", "Show me."),
            ("I just read something about {topic} I need to share.", "Okay, what did you find?"),
        ),
    },
    "call": {
        "teller": "B",
        "openers": (
            ("You sounded different on the phone. Is it {topic}?", "Yes. It's {topic}."),
            ("Your message about {topic} was so short. What's going on?", "I couldn't type it all out."),
            ("I came as soon as I could. Is this about {topic}?", "It is."),
        ),
    },
}

# Per emotion: events (the teller says what happened), reactions (the listener), details (the teller
# goes on), closings (either). {ctx} = a context naming the topic, {person} = someone.
BANKS: dict[str, dict[str, tuple[str, ...]]] = {
    "anger": {
        "event": (
            "{person} took all the credit for {ctx}. Every single idea was mine!",
            "They cancelled {ctx} without telling anyone, after I paid for everything!",
            "{person} trashed {ctx} in front of everyone, just to make me look stupid.",
            "The company running {ctx} charged me twice and then hung up on me. Twice!",
            "{person} lied to my face about {ctx}, and I only found out from a stranger.",
            "Someone wrecked the stand I built for {ctx}, and the security guard just shrugged.",
            "They gave my spot in {ctx} to {person}'s nephew. No explanation, nothing.",
            "I waited three hours for {ctx} and they told me to come back next week. Unbelievably rude.",
        ),
        "reaction": (
            "That is completely unacceptable!",
            "How dare they treat you like that!",
            "Are you kidding me? That's outrageous.",
            "I'd be furious too. That's just wrong.",
            "That makes my blood boil.",
            "Who do they think they are?",
            "That's infuriating. You deserve an apology at the very least.",
            "Honestly, I want to march over there and give them a piece of my mind.",
            "That's a slap in the face after all your work.",
            "No, that's not fair at all. They can't get away with this.",
        ),
        "detail": (
            "I've put years into {topic} and they treat it like garbage!",
            "I'm sick and tired of people walking all over me about {topic}.",
            "I slammed the door so hard the frame cracked. I'm still fuming.",
            "They didn't even have the decency to answer my emails about {topic}.",
            "Every time I bring up {topic} they roll their eyes. I've had enough of it!",
            "I told them exactly what I thought, and I'd say it again, louder.",
            "It's the arrogance that gets me. They think {topic} belongs to them.",
            "I'm filing a formal complaint, and I'm naming every one of them.",
        ),
        "closing": (
            "This is not over. I'm going to make them answer for it.",
            "I refuse to let them treat {topic} like this ever again.",
            "Tomorrow I'm going in there and I'm not leaving until someone takes responsibility.",
            "They'll regret crossing me. Mark my words.",
            "Let's write that complaint tonight. They crossed a line.",
        ),
    },
    "disgust": {
        "event": (
            "I opened the fridge at {ctx} and the whole thing was crawling with maggots.",
            "{person} showed up to {ctx} with rotten leftovers and served them anyway.",
            "The venue for {ctx} had mould growing up the walls and a stench like a sewer.",
            "I found a clump of someone's hair baked into the snacks at {ctx}. Hair!",
            "{person} spat on the floor at {ctx}, right next to the food table.",
            "The bathroom at {ctx} was smeared with something I refuse to describe.",
            "We found out the sponsor of {ctx} had been dumping sewage in the river.",
            "{person} licked the serving spoon at {ctx} and put it straight back in the bowl.",
        ),
        "reaction": (
            "Ew, that is revolting.",
            "Ugh, gross! I think I'm going to gag.",
            "That's vile. Who does that?",
            "Yuck. I can practically smell it from here.",
            "That turns my stomach just hearing it.",
            "Eww, that's nasty. I'd never touch anything there again.",
            "That's repulsive. Absolutely filthy.",
            "Oh no, that's sickening. I feel queasy.",
            "Gross, gross, gross. Please tell me you didn't eat anything.",
        ),
        "detail": (
            "The smell clung to my clothes for days. I had to throw them out.",
            "It was slimy and grey and it moved when I poked it.",
            "I can't even look at anything to do with {topic} now without feeling sick.",
            "There were flies everywhere, buzzing over the mess. Nobody cared.",
            "I scrubbed my hands three times and they still felt dirty.",
            "Just thinking about {topic} makes me want to shower.",
            "The sticky floor made a sucking noise with every step. Nauseating.",
            "I nearly threw up on the spot. It was that foul.",
        ),
        "closing": (
            "I'm bleaching everything I own. Never again.",
            "I'm done with that crowd. The whole thing was repugnant.",
            "Let's change the subject before I lose my lunch.",
            "I'll never look at {topic} the same way. Ugh.",
            "Some things you can't unsee. That was one of them.",
        ),
    },
    "fear": {
        "event": (
            "On the way home from {ctx}, someone followed me for six blocks in the dark.",
            "I got a threatening letter about {ctx}. It had my home address on it.",
            "The floor gave way during {ctx} and I was hanging there, barely holding on.",
            "{person} called in a panic after {ctx}. Nobody has heard from them since.",
            "There were strange noises in the building where we held {ctx}, and then the lights went out.",
            "A stranger kept staring at me through the window during {ctx}, and then he was gone.",
            "The doctor called about the tests I had done after {ctx}. They want to see me urgently.",
            "My car's brakes failed on the way to {ctx}. I still don't know how I stopped.",
        ),
        "reaction": (
            "Oh my god, are you safe right now?",
            "That's terrifying. My heart is pounding just hearing it.",
            "Please tell me you locked every door.",
            "I've got chills. What if it happens again?",
            "That's frightening. Did you call anyone?",
            "I'd be trembling. I'm shaking and I wasn't even there.",
            "Stay close to me tonight, okay? I'm worried sick.",
            "What if he comes back? That's what scares me.",
            "That sounds like a nightmare.",
        ),
        "detail": (
            "I can't sleep. Every creak in the house makes me jump.",
            "My hands were shaking so badly I couldn't dial the number.",
            "I keep checking the locks. I'm so scared it isn't over.",
            "What if it happens again at the next thing about {topic}? I don't think I can go.",
            "I haven't stopped looking over my shoulder since.",
            "My chest went tight and I couldn't breathe. I was sure it was the end.",
            "I'm terrified to even open my mail now, in case it's about {topic}.",
            "Every time my phone buzzes I panic that it's them again.",
        ),
        "closing": (
            "Please don't leave me alone tonight. I'm too frightened.",
            "I'm staying at my parents' until I know it's safe.",
            "I'll call the police first thing. I just want this to stop.",
            "Promise me you'll be careful around anything to do with {topic}.",
            "I don't know what's going to happen next, and that's what terrifies me.",
        ),
    },
    "happiness": {
        "event": (
            "{ctx} got chosen for the national showcase! They loved it!",
            "{person} threw me a thank-you party after {ctx}, and everyone came.",
            "We raised three times our goal with {ctx}. I couldn't stop smiling.",
            "I finally finished {ctx}, and it turned out better than I ever dreamed.",
            "{person} told me {ctx} changed their life. I was grinning all day.",
            "The reviews for {ctx} came in and they're glowing. Every single one!",
            "I got the grant for {ctx}! Full funding for two years!",
            "Everyone at {ctx} was laughing and dancing until midnight. It was perfect.",
        ),
        "reaction": (
            "That's wonderful! I'm so proud of you!",
            "Yay! You totally deserve this!",
            "Oh, that's fantastic news! Congratulations!",
            "I love that! You must be over the moon.",
            "That's the best thing I've heard all week!",
            "You're glowing! This is brilliant.",
            "Hooray! Let's celebrate tonight!",
            "That's amazing, I'm thrilled for you.",
            "What a lovely thing. You've earned every bit of it.",
        ),
        "detail": (
            "I've loved {topic} since I was a kid, and this feels like a dream come true.",
            "I keep grinning at strangers on the street. I can't help it.",
            "Honestly, {topic} has brought me so much joy this year.",
            "I called my mum and we both laughed and cheered down the phone.",
            "I'm so grateful to everyone who believed in me with {topic}.",
            "The best part was seeing how much fun everyone had.",
            "I danced around the kitchen when I heard. Literally danced.",
            "All the hard work on {topic} finally paid off. I feel on top of the world.",
        ),
        "closing": (
            "Drinks are on me tonight. Let's celebrate!",
            "I'm going to remember this day forever.",
            "Thank you for sharing it with me. It means so much.",
            "Here's to more days like this, and to {topic}!",
            "Life feels wonderful right now.",
        ),
    },
    "sadness": {
        "event": (
            "{ctx} is closing for good. Today was the last day.",
            "{person} passed away last week. They were the heart of {ctx}.",
            "Nobody came to {ctx}. I sat there alone with the chairs all set out.",
            "I had to give up {ctx}. I just couldn't afford it any more.",
            "{person} moved across the world, and {ctx} isn't the same without them.",
            "The flood ruined everything from {ctx}. Years of work, gone.",
            "I found the last message {person} sent me about {ctx}. I can't stop reading it.",
            "They told me my part in {ctx} is over. Just like that.",
        ),
        "reaction": (
            "Oh, I'm so sorry. That's heartbreaking.",
            "That must hurt so much. I'm here for you.",
            "Oh no. I know how much it meant to you.",
            "That's such a loss. Come here.",
            "I'm so sorry. Do you want to talk about it?",
            "That breaks my heart.",
            "I wish there was something I could do to make it better.",
            "It's okay to cry. Let it out.",
            "I remember how much you loved it. That's painful.",
        ),
        "detail": (
            "I keep thinking about all the good times we had with {topic}.",
            "The house feels so empty now. I miss it every day.",
            "I cried the whole way home. I couldn't stop the tears.",
            "I don't think I'll ever feel that way about {topic} again.",
            "Everything reminds me of it. I just feel so lonely.",
            "Some nights I just sit and stare at the old photos from {topic}.",
            "It feels like a part of me is gone, and it's never coming back.",
            "I wish I had said goodbye properly.",
        ),
        "closing": (
            "Thank you for listening. I just needed someone.",
            "I guess some things don't last, no matter how much you want them to.",
            "I'll miss {topic} more than I can say.",
            "I just want to sit here for a while, if that's okay.",
            "It won't ever be the same again.",
        ),
    },
    "surprise": {
        "event": (
            "Out of nowhere, {person} turned out to be the one running {ctx} all along!",
            "I opened the mail and there was a cheque for {ctx}, from someone I've never met!",
            "{ctx} got a visit from a famous author. No warning at all!",
            "{person} walked into {ctx} wearing a full astronaut costume. Of all people!",
            "It turns out {ctx} was featured on the evening news and nobody told me.",
            "I found out {person} has been secretly funding {ctx} for years.",
            "Halfway through {ctx}, the whole room went dark and a marching band came in!",
            "{ctx} was moved to a castle. An actual castle! Nobody saw that coming.",
        ),
        "reaction": (
            "Wait, what? No way!",
            "Whoa, seriously? I did not see that coming.",
            "You're kidding! How is that even possible?",
            "Wow! I can't believe it!",
            "Hold on, say that again?",
            "Are you serious? That's astonishing!",
            "Get out of here! Really?",
            "What?! That came out of the blue.",
            "I'm speechless. I never would have guessed.",
        ),
        "detail": (
            "I had to read it three times. I was sure it was a mistake.",
            "Nobody expected it, least of all me. My jaw hit the floor.",
            "Who knew {topic} could lead to something like this?",
            "I'm still stunned. I just stood there with my mouth open.",
            "I never imagined {topic} would take such a twist.",
            "Everyone gasped at once. You could have heard a pin drop.",
            "It came completely out of the blue. I'm still trying to process it.",
            "Of all the things to happen around {topic}, I never saw this one coming.",
        ),
        "closing": (
            "I still can't believe it happened. What a twist!",
            "Well, that's the last thing I expected today.",
            "Life is full of unexpected turns, isn't it?",
            "Who would have thought? {topic}, of all things!",
            "I'm going to need a minute to take that in. Wow.",
        ),
    },
}

MIXED_SHARE = 0.1  # share of template dialogues given lines of a second emotion (filter fodder)
MIN_TURNS, MAX_TURNS = 4, 12


def _fill(line: str, topic: str, ctx: str, person: str) -> str:
    text = line.replace("{ctx}", ctx).replace("{person}", person).replace("{topic}", topic)
    # A line that opens with a context ("my project on ...") or a person starts with a capital.
    return text[:1].upper() + text[1:]


def template_dialogue(
    topic: str, emotion: str, k: int, seed: int, max_turns: int = MAX_TURNS
) -> tuple[str, str | None]:
    """The k-th template dialogue about `topic` conveying `emotion` in MIN_TURNS..max_turns turns,
    and the second emotion whose cues were mixed in (None for most; about MIXED_SHARE, seeded)."""
    if emotion not in BANKS:
        raise ValueError(f"unknown emotion {emotion!r}; allowed: {', '.join(EMOTIONS)}")
    rng = seeded_rng("generate", seed, topic, emotion, k)
    bank = BANKS[emotion]
    shape = SHAPES[rng.choice(sorted(SHAPES))]
    opener, reply = rng.choice(shape["openers"])  # type: ignore[arg-type]
    ctx = rng.choice(CONTEXTS).replace("{topic}", topic)
    person = rng.choice(PEOPLE)
    mixed = rng.choice([e for e in EMOTIONS if e != emotion]) if rng.random() < MIXED_SHARE else None

    head = [opener, reply]
    if shape["teller"] == "B":
        # B took the story in the reply; a short prompt from A lets B tell the event.
        head.append(rng.choice(("Go on.", "What happened?", "Tell me everything.", "I'm all ears.")))
    head.append(rng.choice(bank["event"]))
    # The middle alternates a listener reaction and a teller detail; a closing ends it.
    room = max_turns - len(head) - 1
    middle = rng.randint(min(2, room) if mixed else max(0, MIN_TURNS - len(head) - 1), room)
    reactions = rng.sample(bank["reaction"], len(bank["reaction"]))
    details = rng.sample(bank["detail"], len(bank["detail"]))
    roles = ["reaction" if i % 2 == 0 else "detail" for i in range(middle)]
    body = [(reactions if role == "reaction" else details)[i // 2] for i, role in enumerate(roles)]
    if mixed and not middle:
        mixed = None  # a short dialogue with no middle has no room for a second emotion
    if mixed:
        # The last (up to) two middle lines carry the other emotion, in the same roles.
        for i in range(max(0, middle - 2), middle):
            body[i] = rng.choice(BANKS[mixed][roles[i]])
    lines = [*head, *body, rng.choice(bank["closing"])]
    text = [_fill(line, topic, ctx, person) for line in lines]
    return "\n".join(f"{'AB'[i % 2]}: {line}" for i, line in enumerate(text)), mixed
