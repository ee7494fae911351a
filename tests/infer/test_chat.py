"""`tunewise chat RUN --prompt`: the run's template, streamed output, flags override the run's settings."""

import pytest

from conftest import train_demo_run
from tunewise.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dirs, tw_home):
    return train_demo_run(tmp_path_factory.mktemp("chat"), tw_home, train={"max_steps": 1}, data={"val_size": 4})


def test_one_shot_streams_and_reports_no_stop(run, capsys):
    from tunewise.infer.generate import generate, load_run_model

    assert main(["chat", str(run), "--prompt", "Who are you?", "--max-new-tokens", "5", "--temperature", "0"]) == 0
    cap = capsys.readouterr()
    lm = load_run_model(run)
    want = generate(lm, [[{"role": "user", "content": "Who are you?"}]], max_new_tokens=5, temperature=0.0,
                    repetition_penalty=1.1)[0]
    assert cap.out.strip() == want["text"]  # streamed to stdout, same greedy answer as generate()
    assert "max_new_tokens=5" in cap.err     # the random tiny model does not stop: the user is told


def test_interactive_reset_and_exit(run, capsys, monkeypatch):
    lines = iter(["hello", "/reset", "again", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", str(run), "--max-new-tokens", "2", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.count("model> ") == 2
