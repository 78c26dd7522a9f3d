"""fer_pipeline.runner.model_transport: a file cut into parts and joined back, sha256-checked."""

from __future__ import annotations

import pytest

from fer_pipeline.runner.model_transport import join_files, model_parts, split_file


def test_split_and_join_round_trip(tmp_path):
    import hashlib

    source = tmp_path / "model.pt"
    payload = bytes(range(256)) * 41 + b"tail"  # 10,500 bytes
    source.write_bytes(payload)
    parts = split_file(source, 4096, out_dir=tmp_path / "out")
    assert [p.name for p in parts] == ["model.pt.part0", "model.pt.part1", "model.pt.part2"]
    assert [p.stat().st_size for p in parts] == [4096, 4096, 10500 - 8192]
    # numeric, not lexical, order once there are ten or more parts
    many = split_file(source, 1000, out_dir=tmp_path / "many")
    assert model_parts(tmp_path / "many" / "model.pt") == many and len(many) == 11
    digest = hashlib.sha256(payload).hexdigest()
    joined = join_files(model_parts(tmp_path / "out" / "model.pt"), tmp_path / "joined.pt", sha256=digest)
    assert joined.read_bytes() == payload

    parts[1].unlink()
    with pytest.raises(ValueError, match=r"part\(s\) \[1\] missing"):
        model_parts(tmp_path / "out" / "model.pt")
    with pytest.raises(ValueError, match="expected"):  # a part lost: the digest catches it, nothing written
        join_files([parts[0], parts[2]], tmp_path / "bad.pt", sha256=digest)
    assert not [path for path in tmp_path.iterdir() if "bad.pt" in path.name]  # nor a temporary file
    with pytest.raises(ValueError, match="no parts"):
        model_parts(tmp_path / "absent.pt")
