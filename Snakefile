# The 2013 paper's experiment as a workflow: train each (game, seed), evaluate every
# snapshot of each run, then draw Figure 2, Figure 3 and Table 1, and make a video of
# each run's final snapshot playing.
# Default: config/config.yaml (preset paper2013, the 7 games, seed 0); see
# docs/workflow.md for the other configs and for what each rule does.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


# The project's image (docs/cluster.md, "Containers"): used only with --sdm apptainer.
container: "dqn-atari.sif"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/videos.smk"
include: "workflow/rules/bench.smk"


rule all:
    default_target: True
    input:
        final_products(),
