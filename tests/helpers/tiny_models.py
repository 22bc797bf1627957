"""The tiny in-process models and tokenizers (no download): a byte-level BPE tokenizer with a ChatML
template, a random Llama, the other families test_families checks, and short labelled dialogues."""

from __future__ import annotations

import copy

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.model.loading import LoadedModel
from emoneurons.text.paper_prompts.classify import CLASSIFY_SYSTEM_PROMPT, CLASSIFY_USER_PROMPT
from emoneurons.text.paper_prompts.label import LABEL_PROMPT

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# One short dialogue per emotion (the CUDA-vs-CPU tests and bench/gpu_check.py).
SIX_EMOTION_DIALOGUES = [
    "A: I can't believe this happened!\nB: Oh no, that is terrible.",
    "A: What a wonderful day.",
    "A: That smell is revolting.\nB: I'm scared of the dark.\nA: I miss her so much.\nB: Oh no.",
    "A: I miss her so much.\nB: What a wonderful day.\nA: That is terrible.",
    "A: Oh no!",
    "A: You broke it again, I am furious!",
]


SIX_EMOTION_LABELS = ["surprise", "happiness", "disgust", "sadness", "fear", "anger"]


def build_tokenizer(vocab_size: int = 600):
    """A byte-level BPE tokenizer trained in-process on the prompts (no download), ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [CLASSIFY_SYSTEM_PROMPT, CLASSIFY_USER_PROMPT, LABEL_PROMPT, " ".join(EMOTIONS)] * 4 + [
        "A: I can't believe this happened! B: Oh no, that is terrible. A: What a wonderful day.",
        "A: That smell is revolting. B: I'm scared of the dark. A: I miss her so much.",
    ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|pad|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_llama(vocab_size: int, seed: int = 0, layers: int = 4, hidden: int = 32, intermediate: int = 64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=4096, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).eval()
    model.requires_grad_(False)
    return model


def build_family(tokenizer, family: str, seed: int = 0, **overrides) -> LoadedModel:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = family_config(family, len(tokenizer), tokenizer.pad_token_id, **overrides)
    model = AutoModelForCausalLM.from_config(config).eval()
    model.requires_grad_(False)
    return LoadedModel(model=model, tokenizer=tokenizer, name=f"tiny-random-{family}")


def biased_copy(lm, token_id: int):
    """The model with its output layer pushed towards one token (untied), to steer greedy decoding."""
    from emoneurons.model.loading import LoadedModel

    model = copy.deepcopy(lm.model)
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    head.weight.data = model.lm_head.weight.data.clone()
    head.bias.data.zero_()
    head.bias.data[token_id] = 50.0
    model.lm_head = head
    return LoadedModel(model=model, tokenizer=lm.tokenizer, name="biased")


FAMILY_LAYERS, FAMILY_HIDDEN, FAMILY_FFN = 3, 32, 48


def family_config(family: str, vocab: int, pad: int, **overrides):
    import transformers

    common = dict(vocab_size=vocab, hidden_size=FAMILY_HIDDEN, intermediate_size=FAMILY_FFN, num_hidden_layers=FAMILY_LAYERS,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, pad_token_id=pad,
                  bos_token_id=None, eos_token_id=None, initializer_range=0.2)
    # Family-specific parts that the engine must honour, set so that getting them wrong shows:
    # Gemma 2's soft-capping of attention and final logits, Gemma 3's local and global rotary
    # embeddings (different bases) on alternating sliding and full layers, Phi-3's fused FFN.
    extra = {
        "llama": ("LlamaConfig", {}),
        "mistral": ("MistralConfig", {"sliding_window": 512}),
        "qwen2": ("Qwen2Config", {}),
        "qwen3": ("Qwen3Config", {"head_dim": 8}),
        "gemma2": ("Gemma2Config", {"head_dim": 8, "query_pre_attn_scalar": 8, "attn_logit_softcapping": 1.0,
                                    "final_logit_softcapping": 1.0, "sliding_window": 512}),
        "gemma3_text": ("Gemma3TextConfig", {"head_dim": 8, "query_pre_attn_scalar": 8, "sliding_window": 512,
                                             "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
                                             "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                                                                 "full_attention": {"rope_type": "default", "rope_theta": 10000.0}}}),
        "phi3": ("Phi3Config", {}),
    }
    name, options = extra[family]
    return getattr(transformers, name)(**(common | options | overrides))
