# `snakemake bench`: dqn bench's throughput and memory figures as JSON, one file per
# --device: bench/<device>.json in the results directory (config key `results`, default
# results/). Not a default target: it measures the machine, not the experiment, and
# wants the machine to itself while it runs.
#
# Its inputs are the dqn sources, so a changed dqn measures again; each file records
# the git commit, machine and library versions it was measured with (compare files of
# two versions by copying one away first).

BENCH_SECONDS = 3  # each timing's length; docs/benchmark.md's figures use the same


rule bench:
    input:
        results(f"bench/{config['device']}.json"),


rule bench_device:
    input:
        code=sorted(str(path.relative_to(PROJECT_ROOT)) for path in (PROJECT_ROOT / "dqn").glob("*.py")),
    output:
        results("bench/{device}.json"),
    params:
        dqn=DQN,
        seconds=BENCH_SECONDS,
    log:
        results("logs/bench/{device}.log"),
    wildcard_constraints:
        device="auto|cpu|cuda",
    # Two threads: the bench times the training loop on 1 and on 2 threads itself.
    threads: 2
    resources:
        gpu=lambda wildcards: 0 if wildcards.device == "cpu" else 1,
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.dqn} bench --device {wildcards.device} --threads {threads}"
        " --seconds {params.seconds} > {output} 2> {log}"
