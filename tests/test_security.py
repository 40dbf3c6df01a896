"""Loading a run never executes code from its files: a crafted pickle in best.pt is refused with one line."""
import os
import pickle

import pytest
import torch

from tandem.cli import main
from tandem.errors import TandemError
from tandem.utils import load_checkpoint

from test_cli import tiny_config, tiny_csv  # noqa: F401  (fixture)


class _Exploit:
    """Unpickling this calls os.system: what an attacker would plant in a checkpoint."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "best.pt"
    torch.save({"state": {}, "payload": _Exploit(str(marker))}, path)
    with pytest.raises(TandemError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()
    # the same file read the unsafe way does execute: the test can fail
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_plain_pickle_and_garbage_are_clear_errors(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(pickle.dumps(_Exploit(str(tmp_path / "m"))))
    with pytest.raises(TandemError):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(TandemError, match="cannot read checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "m").exists()


def test_evaluate_refuses_crafted_run(tmp_path, tiny_csv, capsys):  # noqa: F811
    config = tiny_config(tmp_path, tiny_csv)
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out), "--set", "train.epochs=1"]) == 0
    marker = tmp_path / "pwned"
    state = torch.load(out / "best.pt", weights_only=True)
    state["extra"] = _Exploit(str(marker))
    torch.save(state, out / "best.pt")
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to load" in err[0]
    assert not marker.exists()
