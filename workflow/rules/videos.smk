# One gameplay video per run (`dqn watch`): its final snapshot's epsilon = 0.05 policy
# playing one episode, at most `video_steps` agent steps, with the predicted values
# beside the screen. It waits for the run's evaluation, whose final snapshot it shows.


rule video:
    input:
        complete=COMPLETE,
        evaluation=EVALUATION,
    output:
        report(
            VIDEO,
            caption="../report/video.rst",
            category="Videos",
            labels={"game": "{game}", "seed": "{seed}"},
        ),
    params:
        dqn=DQN,
        run_dir=run_dir,
        steps=config["video_steps"],
    log:
        results("logs/video/{game}/seed{seed}.log"),
    benchmark:
        results("benchmarks/video/{game}/seed{seed}.tsv")
    threads: 1
    resources:
        gpu=GPU_JOB,
        device_args=DEVICE_ARGS,
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.dqn} watch --run {params.run_dir} --out {output} --max-steps {params.steps}"
        " --threads {threads} {resources.device_args} > {log} 2>&1"
