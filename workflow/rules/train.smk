# One training job per (game, seed): `dqn train`, which resumes by itself when rerun.
#
# The declared output is the run's completion file, `complete.h5`, which `dqn train`
# writes last, once the run has reached its preset's train_steps (it names the final
# snapshot): so no rule needs to know how many epochs a preset makes, and each game may
# have a preset of its own. It is flagged update() so that Snakemake never deletes it
# before a job: `dqn train` finds a complete run complete, and refuses a run directory
# of another preset, instead of losing it. Nothing else of a run is declared:
# Snakemake deletes the existing outputs of a failed job, and a run directory without
# its held-out states or snapshots cannot be resumed. So a killed or failed training
# job loses nothing and continues from its newest snapshot when the workflow runs again.


rule train:
    input:
        run_of_these_settings,
    output:
        complete=update(COMPLETE),
    params:
        dqn=DQN,
        run_dir=run_dir,
        preset=lambda wildcards: preset_name(wildcards.game),
        overrides=set_args,
    log:
        results("logs/train/{game}/seed{seed}.log"),
    benchmark:
        results("benchmarks/train/{game}/seed{seed}.tsv")
    threads: config["train_threads"]
    resources:
        gpu=GPU_JOB,
        device_args=DEVICE_ARGS,
        mem_mb=lambda wildcards: train_mem_mb(PRESETS[wildcards.game]),
        runtime=lambda wildcards: train_runtime_min(PRESETS[wildcards.game]),
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.dqn} train --game {wildcards.game} --preset {params.preset} --seed {wildcards.seed}"
        " --out {params.run_dir} {params.overrides} {resources.device_args}"
        " --threads {threads} --progress-s 60 > {log} 2>&1"
