import itertools
import json

import pytest

from dqn import migrate, presets
from dqn.errors import ConfigError


def test_presets_are_valid_and_follow_the_papers():
    paper, nature = presets.load("paper2013"), presets.load("nature2015")
    assert (paper.network, paper.target_update_period_steps, paper.update_period_steps) == (
        "paper2013",
        0,
        1,
    )
    assert paper.train_steps == 10_000_000 and paper.epoch_updates == 50_000
    assert paper.replay_capacity_transitions == 1_000_000 and paper.minibatch_transitions == 32
    assert nature.target_update_period_steps == 10_000 and nature.loss == "huber"
    assert nature.life_loss_ends_episode and nature.noop_max == 30
    # DQN 3.0's counting (docs/fidelity.md): no-ops in frames, steps cut at a lost life,
    # evaluation of 125k steps over whole games
    assert (nature.noop_start, nature.life_loss_cuts_frame_skip) == ("frames", True)
    assert (nature.eval_steps, nature.eval_episodes, nature.eval_epsilon) == (125_000, 0, 0.05)
    for name in presets.PRESETS:
        presets.load(name)


def test_every_key_names_its_unit_or_is_dimensionless():
    units = ("_steps", "_frames", "_updates", "_transitions", "_states")
    dimensionless = {
        "preprocessing",
        "network",
        "discount",
        "learning_rate",
        "rmsprop_decay",
        "rmsprop_epsilon",
        "rmsprop_centered",
        "optimizer",
        "adam_epsilon",
        "reward_clip",
        "loss",
        "loss_reduction",
        "epsilon_start",
        "epsilon_end",
        "eval_epsilon",
        "life_loss_ends_episode",
        "eval_episodes",
        "fire_on_reset",
        "action_set",
        "max_grad_norm",
        "epsilon_anneal_from",
        "noop_start",
        "life_loss_cuts_frame_skip",
        "network_init",
        "cuda_graph_update",
        "cuda_deterministic",
        "resize",
        "terminal_takes_step",
        "epoch_counted_in",
    }
    counted_in_another_keys_unit = {"noop_max": "noop_start"}
    for key in presets.PAPER2013.as_dict():
        assert key.endswith(units) or key in dimensionless | counted_in_another_keys_unit.keys(), (
            key
        )


def test_overrides_are_parsed_by_type():
    config = presets.load(
        "ci", ["train_steps=2_000", "discount=0.9", "reward_clip=false", "loss=huber"]
    )
    assert (config.train_steps, config.discount, config.reward_clip, config.loss) == (
        2000,
        0.9,
        False,
        "huber",
    )


@pytest.mark.parametrize(
    "override,message",
    [
        ("bogus=1", "--set bogus: unknown key; valid keys: "),
        ("train_steps=ten", "--set train_steps='ten': expected int"),
        ("discount=1.5", "discount=1.5: must be in [0, 1]"),
        ("train_steps=-5", "train_steps=-5: must be > 0"),
        ("loss=cubic", "loss='cubic': expected one of squared, huber"),
        ("reward_clip=maybe", "--set reward_clip='maybe': expected bool"),
        ("train_steps", "expected key=value"),
        ("train_steps=100", "train_steps=100: must exceed replay_start_steps=200"),
    ],
)
def test_bad_overrides_name_the_key_and_value(override, message):
    with pytest.raises(ConfigError) as error:
        presets.load("ci", [override])
    assert message in str(error.value)


def test_the_cuda_graph_needs_rmsprop_whose_step_holds_no_changing_number():
    assert presets.load("ci", ["cuda_graph_update=true"]).cuda_graph_update
    with pytest.raises(ConfigError, match="cuda_graph_update=True: needs optimizer=rmsprop"):
        presets.load("ci", ["cuda_graph_update=true", "optimizer=adam"])


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(
        ConfigError,
        match="unknown preset 'paper2014'; valid presets: paper2013, nature2015, quick, ci",
    ):
        presets.load("paper2014")


@pytest.mark.parametrize("key", ["learning_rate", "rmsprop_epsilon", "discount"])
@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e309"])
def test_non_finite_floats_are_refused(key, text):
    with pytest.raises(ConfigError, match=rf"^--set {key}='{text}': must be a finite number$"):
        presets.load("ci", [f"{key}={text}"])
    stored = {**presets.CI.as_dict(), key: float(text)}  # a config read back from JSON
    with pytest.raises(ConfigError, match=rf"^{key}=-?(nan|inf): must be a finite number$"):
        presets.Config(**stored)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("train_steps", True, "train_steps=True: expected int"),
        ("train_steps", 2000.0, "train_steps=2000.0: expected int"),
        ("discount", False, "discount=False: expected float"),
        ("reward_clip", 1, "reward_clip=1: expected bool"),
        ("loss", "cubic", "loss='cubic': expected one of squared, huber"),
        ("bogus", 1, "bogus: unknown key; valid keys: "),
    ],
)
def test_a_config_built_from_values_checks_their_types(key, value, message):
    with pytest.raises(ConfigError) as error:
        presets.Config(**{**presets.CI.as_dict(), key: value})
    assert message in str(error.value)


def test_a_stored_config_builds_the_same_frozen_config():
    stored = json.loads(json.dumps(presets.NATURE2015.as_dict()))
    config = presets.Config(**stored)
    assert config == presets.NATURE2015 and hash(config) == hash(presets.NATURE2015)
    with pytest.raises(ValueError, match="frozen"):
        config.train_steps = 5
    del stored["discount"]
    with pytest.raises(ConfigError, match="^discount: missing$"):
        presets.Config(**stored)


def test_derived_configs_are_checked_across_keys():
    assert presets.CI.with_values(train_steps=2_000).train_steps == 2_000
    with pytest.raises(
        ConfigError, match="^heldout_collect_steps=300: must exceed heldout_states=400"
    ):
        presets.CI.with_values(heldout_states=400)


def test_every_key_declares_its_meaning_unit_and_source():
    suffixes = {
        presets.STEPS: "_steps",
        presets.FRAMES: "_frames",
        presets.UPDATES: "_updates",
        presets.TRANSITIONS: "_transitions",
        presets.STATES: "_states",
        presets.EPISODES: "_episodes",
    }
    schema = presets.Config.model_json_schema()["properties"]
    assert list(schema) == list(presets.PAPER2013.as_dict())
    for key, declared in schema.items():
        assert declared["description"] and declared["source"], key
        assert declared["unit"] in {*suffixes, presets.DIMENSIONLESS, presets.NOOPS}, key
        if declared["unit"] not in (presets.DIMENSIONLESS, presets.NOOPS):
            assert key.endswith(suffixes[declared["unit"]]), key
        if declared.get("type") in ("integer", "number"):  # a count or a quantity: a range
            assert {"minimum", "exclusiveMinimum"} & set(declared), key
        assert "default" not in declared, key  # a preset gives every value


def test_format_1_configs_read_as_this_versions_keys():
    # a nature2015 config as stored before the target period was counted in steps and the
    # no-op count was renamed: same period in steps, the same count, no-ops in steps
    old = {
        k: v
        for k, v in presets.NATURE2015.as_dict().items()
        if k not in migrate.ADDED_KEYS and k not in ("target_update_period_steps", "noop_max")
    }
    old.update(target_update_period_updates=10_000, max_noop_start_steps=30)
    config = presets.Config(**migrate.format1_config(old))
    assert (config.target_update_period_steps, config.noop_max) == (40_000, 30)
    assert (config.noop_start, config.life_loss_cuts_frame_skip) == ("steps", False)
    # a config of this version's keys is what it was
    assert migrate.format1_config(presets.NATURE2015.as_dict()) == presets.NATURE2015.as_dict()


def test_the_changes_from_a_preset_are_its_keys_of_other_values_in_key_order():
    config = {**presets.load("paper2013").as_dict(), "train_steps": 5, "eval_steps": 7}
    changed = presets.changes("paper2013", {**config, "a_key_no_preset_has": 1})
    assert changed == {"eval_steps": 7, "train_steps": 5}
    assert presets.key_values(changed) == "eval_steps=7, train_steps=5"
    assert presets.changes("paper2013", presets.load("paper2013").as_dict()) == {}
    assert presets.changes("a_preset_this_version_lacks", config) == {}
    assert presets.describe("paper2013", changed) == "paper2013 [eval_steps=7, train_steps=5]"
    assert presets.describe("ci", presets.changes("ci", presets.load("ci").as_dict())) == "ci"


@pytest.mark.parametrize("counted_in", ["updates", "steps"])
def test_the_first_epoch_ends_where_the_training_loop_ends_it(counted_in):
    # Config.first_epoch_end_step (what the memory check budgets the first, largest replay
    # save by) against the loop's own rule (dqn/train.py: an update at each multiple of
    # update_period_steps past the replay start; ends_epoch), for replay starts that are
    # and are not whole update periods or epochs.
    for period, updates, replay_start in itertools.product((1, 3, 4), (2, 5), (8, 9, 12, 30)):
        config = presets.load("ci").with_values(
            update_period_steps=period,
            epoch_updates=updates,
            replay_start_steps=replay_start,
            epoch_counted_in=counted_in,
        )
        done = 0
        for step in itertools.count(1):
            updated = step > replay_start and step % period == 0
            done += updated
            if config.ends_epoch(step, updated, done):
                break
        assert config.first_epoch_end_step == step, (period, updates, replay_start)
