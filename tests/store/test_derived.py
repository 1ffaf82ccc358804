from neurolake.store import Lake, spec_hash
from tests.store.partdata import create_run


def test_derived_reuse(lake_target):
    url, opts = lake_target
    run = create_run(Lake.create(url, opts))
    spec = {"layers": ["enc.conv1"], "quantile": 0.9}
    d = run.derived("neurons", spec)
    assert d.spec_hash == spec_hash({"quantile": 0.9, "layers": ["enc.conv1"]})  # key order is irrelevant
    assert d.loc.url.endswith(f"runs/r1/derived/neurons/{d.spec_hash}")
    assert not d.complete
    d.write_bytes(b"\x00\x01", "stats.bin")
    assert not run.derived("neurons", spec).complete  # written but not committed
    d.commit()
    again = Lake.open(url, opts).run("r1").derived("neurons", dict(spec))
    assert again.complete and again.read_bytes("stats.bin") == b"\x00\x01"
    assert again.read_json("spec.json") == spec
    other = run.derived("neurons", {"layers": ["enc.conv1"], "quantile": 0.99})
    assert other.spec_hash != d.spec_hash and not other.complete
    from neurolake.store.derived import list_derived

    assert [x.spec for x in list_derived(run.loc.child("derived"), "neurons")] == [spec]


def test_reading_derived_parquet_leaves_the_interpreter_able_to_exit():
    # A threaded Parquet read can leave a thread pool that aborts the interpreter at exit
    # (rc 134, "terminate called without an active exception"; about one run in two with
    # pyarrow 26 here). Eight fresh interpreters each decode a list-column table and exit.
    import subprocess
    import sys

    code = (
        "import pyarrow as pa\n"
        "from neurolake.store.tables import decode_parquet, encode_parquet\n"
        "t = pa.table({'items': [['a', 'b']] * 50, 'n': list(range(50))})\n"
        "assert decode_parquet(encode_parquet(t)).equals(t)\n"
    )
    codes = [subprocess.run([sys.executable, "-c", code], capture_output=True).returncode for _ in range(8)]
    assert codes == [0] * 8
