# One evaluation job per run: every snapshot (2013 §5.1), and the final snapshot's
# value trace for Figure 3.


rule evaluate:
    input:
        complete=COMPLETE,
    output:
        EVALUATION,
    params:
        dqn=DQN,
        run_dir=run_dir,
    log:
        results("logs/evaluate/{game}/seed{seed}.log"),
    benchmark:
        results("benchmarks/evaluate/{game}/seed{seed}.tsv")
    threads: config["evaluate_threads"]
    resources:
        gpu=GPU_JOB,
        device_args=DEVICE_ARGS,
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.dqn} evaluate --run {params.run_dir} --out {output} --workers {threads}"
        " --threads 1 {resources.device_args} > {log} 2>&1"


rule trace_value_function:
    input:
        complete=COMPLETE,
    output:
        TRACE,
    params:
        dqn=DQN,
        run_dir=run_dir,
        steps=config["trace_steps"],
    log:
        results("logs/trace/{game}/seed{seed}.log"),
    benchmark:
        results("benchmarks/trace/{game}/seed{seed}.tsv")
    threads: 1
    resources:
        gpu=GPU_JOB,
        device_args=DEVICE_ARGS,
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.dqn} trace --run {params.run_dir} --out {output} --steps {params.steps}"
        " --threads {threads} {resources.device_args} > {log} 2>&1"
