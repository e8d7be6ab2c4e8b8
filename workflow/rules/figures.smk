# The paper's figures and table, from the evaluation files (and Figure 3's trace).
# Each figure also writes the numbers it draws as JSON beside it.
#
# The modules that draw them (plots.py, and aggregates.py for the aggregates' numbers)
# are inputs too: a change to them (a pull, an edit) draws them again, in seconds. Snakemake's own code trigger sees only a rule's shell command.
# Training and evaluation are not redone for a change of code: they take hours.
FIGURE_CODE = [str(PROJECT_ROOT / "dqn" / name) for name in ("plots.py", "aggregates.py")]


rule figure_training_curves:
    input:
        evaluations=lambda wildcards: evaluations(curve_games(wildcards)),
        paper=PAPER_FIGURE2,
        code=FIGURE_CODE,
    output:
        png=report(
            results("figures/training_curves_{curves}.png"),
            caption="../report/training_curves.rst",
            category="Figure 2: training curves",
        ),
        pdf=results("figures/training_curves_{curves}.pdf"),
        data=results("figures/training_curves_{curves}.json"),
    params:
        dqn=DQN,
        games=curve_games,
        prefix=prefix,
    log:
        results("logs/figures/training_curves_{curves}.log"),
    conda:
        "../../envs/plotting.yaml"
    shell:
        "{params.dqn} plot training-curves --eval {input.evaluations} --games {params.games}"
        " --paper {input.paper} --out {params.prefix} > {log} 2>&1"


rule figure_value_function:
    input:
        trace=expand(TRACE, **value_function_run()),
        code=FIGURE_CODE,
    output:
        png=report(
            results("figures/value_function.png"),
            caption="../report/value_function.rst",
            category="Figure 3: value function",
        ),
        pdf=results("figures/value_function.pdf"),
        data=results("figures/value_function.json"),
    params:
        dqn=DQN,
        prefix=prefix,
    log:
        results("logs/figures/value_function.log"),
    conda:
        "../../envs/plotting.yaml"
    shell:
        "{params.dqn} plot value-function --trace {input.trace} --out {params.prefix} > {log} 2>&1"


rule table1:
    input:
        evaluations=evaluations(TABLE1_GAMES),
        paper=PAPER_TABLE,
        code=FIGURE_CODE,
    output:
        csv=report(
            results("tables/table1.csv"),
            caption="../report/table1.rst",
            category="Table 1",
        ),
        markdown=results("tables/table1.md"),
        latex=results("tables/table1.tex"),
        png=report(
            results("figures/table1.png"),
            caption="../report/table1.rst",
            category="Table 1",
        ),
        pdf=results("figures/table1.pdf"),
        data=results("figures/table1.json"),
    params:
        dqn=DQN,
        table=lambda wildcards, output: os.path.splitext(output.csv)[0],
        figure=lambda wildcards, output: os.path.splitext(output.png)[0],
    log:
        results("logs/figures/table1.log"),
    conda:
        "../../envs/plotting.yaml"
    shell:
        "{params.dqn} plot table1 --eval {input.evaluations} --paper {input.paper}"
        " --table {params.table} --figure {params.figure} > {log} 2>&1"


# Across games and seeds (Agarwal et al. 2021): human-normalised final scores' median, IQM,
# mean and optimality gap with bootstrap intervals, IQM per snapshot, performance
# profile, probability of improvement. Table 1's games: Catch has no human score.
rule figure_aggregate:
    input:
        evaluations=evaluations(TABLE1_GAMES),
        paper=PAPER_TABLE,
        code=FIGURE_CODE,
    output:
        **{
            f"{figure}_png": report(
                results(f"figures/aggregate_{figure}.png"),
                caption="../report/aggregate.rst",
                category="Aggregates across games and seeds",
            )
            for figure in AGGREGATE_FIGURES
        },
        **{
            f"{figure}_{ext}": results(f"figures/aggregate_{figure}.{ext}")
            for figure in AGGREGATE_FIGURES
            for ext in ("pdf", "json")
        },
    params:
        dqn=DQN,
        reps=config["bootstrap_reps"],
        # <results>/figures/aggregate: dqn plot adds _<figure>.png, .pdf, .json
        prefix=lambda wildcards, output: output.intervals_png.removesuffix("_intervals.png"),
    log:
        results("logs/figures/aggregate.log"),
    conda:
        "../../envs/plotting.yaml"
    shell:
        "{params.dqn} plot aggregate --eval {input.evaluations} --paper {input.paper}"
        " --reps {params.reps} --out {params.prefix} > {log} 2>&1"
