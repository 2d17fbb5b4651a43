"""The one typed run configuration: flags, TOML, one name per setting, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import launch
from swarmgp.agents.run_config import ConfigError, RunConfig, dump_toml, settings_of

ROOT = Path(__file__).resolve().parents[2]


def test_toml_and_equivalent_flags_give_the_same_config(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(
        "seed = 4\n[swarm]\nagents = 6\ntopology = 'tree'\n[model]\ninducing = 12\n"
        "learn = false\n[data]\nbatches = 3\nbatch_size = 7\ninputs = ['a', 'b']\n"
        "[faults]\nloss = 0.25\nchurn = ['1.5:4:crash']\n[scoring]\nbaselines = ['local']\n"
    )
    flags = [
        "--seed", "4", "--agents", "6", "--topology", "tree", "--inducing", "12",
        "--no-learn", "--batches", "3", "--batch-size", "7", "--inputs", "a,b",
        "--loss", "0.25", "--churn", "1.5:4:crash", "--baselines", "local",
    ]  # fmt: skip
    _, from_file = launch.parse_config(["sim", "--config", str(toml)])
    _, from_flags = launch.parse_config(["sim", *flags])
    assert from_file == from_flags
    assert from_file.faults.churn == ((1.5, 4, "crash"),)
    # flags override the file
    _, both = launch.parse_config(["sim", "--config", str(toml), "--agents", "9"])
    assert both.swarm.agents == 9 and both.model.inducing == 12


def test_written_toml_reads_back_identically(tmp_path: Path) -> None:
    cfg = RunConfig.make("local", agents=5, inputs="x,y", loss=0.1, data="csv:a b.csv")
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(cfg))
    _, back = launch.parse_config(["local", "--config", str(path)])
    assert back == cfg


@pytest.mark.parametrize("command", ["sim", "local", "agent"])
def test_one_name_per_setting_from_flag_to_field(command: str) -> None:
    sub = launch.build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    help_text = sub.choices[command].format_help()
    names = list(settings_of(command))
    assert names and set(names) <= set(RunConfig.make(command).flat())
    for name in names:
        flag = "--no-learn" if name == "learn" else "--" + name.replace("_", "-")
        assert flag in help_text, name


@pytest.mark.parametrize(
    "bad",
    [{"agents": 0}, {"loss": 2.0}, {"batch_size": 0}, {"test_points": 0}, {"nonsense": 1}],
)
def test_invalid_settings_raise_config_error(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        RunConfig.make("sim", **bad)


@pytest.mark.parametrize("command", ["sim", "local", "agent"])
@pytest.mark.parametrize(
    "flags",
    [
        ["--agents", "0"],
        ["--loss", "2"],
        ["--loss", "-0.5"],
        ["--batch-size", "0"],
        ["--test-points", "0"],
        ["--inducing", "x"],
        ["--topology", "moebius"],
    ],
)
def test_invalid_option_values_exit_2_with_one_line(command: str, flags: list[str]) -> None:
    p = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), command, *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert flags[0] in lines[0], lines[0]


def test_sample_config_in_examples_is_valid() -> None:
    _, cfg = launch.parse_config(["sim", "--config", str(ROOT / "examples" / "swarm.toml")])
    assert cfg is not None and cfg.swarm.agents == 12 and cfg.faults.loss == 0.1


def test_quiet_links_keep_the_false_expiry_budget():
    """``quiet_every``: as sparse as still leaves ``needed`` beacons before a quiet link's
    (longer) expiry, counted by brute force on the beacon times; 2 lossless, 1 from 1 %."""
    import math

    from swarmgp.agents.factory import FALSE_EXPIRY, MIN_TIMEOUT_BEACONS, quiet_every

    def before_expiry(beats: int, k: int) -> int:
        # beacons at k, 2k, ... periods after the last one heard, up to the expiry after
        # beats + k - 1 periods (a tree link's timeout holds `beats` in the same count)
        return sum(1 for t in range(k, 1000, k) if t <= beats + k - 1)

    for loss, want in ((0.0, 2), (1e-3, 2), (0.01, 1), (0.05, 1), (0.3, 1)):
        p = min(max(loss, 1e-3), 0.9)
        needed = math.ceil(math.log(FALSE_EXPIRY) / math.log(p))
        beats = min(max(MIN_TIMEOUT_BEACONS, needed), 160)
        k = quiet_every(beats, needed)
        assert k == want, (loss, k)
        assert before_expiry(beats, k) >= needed
        assert k == 8 or before_expiry(beats, k + 1) < needed  # and no sparser one would do
