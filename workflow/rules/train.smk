# One training job per (game, seed): `dqn train`, which resumes by itself when rerun.
#
# The declared output is the final snapshot alone (its number follows from the preset,
# see Config.final_epoch in dqn/presets.py): `dqn train` writes it last and atomically, after heldout.h5 and
# every earlier snapshot, so it exists only once the run is complete. It is flagged
# update() so that Snakemake never deletes it before a job: `dqn train` finds a complete
# run complete, and refuses a run directory of another preset, instead of losing it.
# heldout.h5 is not declared: Snakemake deletes the existing outputs of a failed job,
# and a run directory with snapshots but no held-out states cannot be resumed. With
# nothing of a partial run declared, a killed or failed training job loses nothing
# and continues from its newest snapshot when the workflow is run again.


rule train:
    output:
        final_snapshot=update(FINAL_SNAPSHOT),
    params:
        dqn=DQN,
        run_dir=run_dir,
        preset=config["preset"],
        overrides=SET_ARGS,
        device_args=DEVICE_ARGS,
    log:
        "results/logs/train/{game}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{game}/seed{seed}.tsv"
    threads: config["train_threads"]
    resources:
        gpu=GPU_JOB,
        mem_mb=train_mem_mb(PRESET),
        runtime=train_runtime_min(PRESET),
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.dqn} train --game {wildcards.game} --preset {params.preset} --seed {wildcards.seed}"
        " --out {params.run_dir} {params.overrides} {params.device_args}"
        " --threads {threads} --progress-s 60 > {log} 2>&1"
