# encoderlens: what do vision encoders know, and where do they look?
# The default config is the embedded demo; real studies: snakemake --configfile presets/<study>.yaml

from snakemake.utils import min_version

min_version("9.0")


# A preset given with --configfile replaces the demo instead of being merged into it (Snakemake's
# default would merge, running the demo datasets alongside the study).
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


# snakemake --report report.html (or .zip): every figure and the numbers behind it, by study
report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/resources.smk"
include: "rules/preflight.smk"
include: "rules/datasets.smk"
include: "rules/models.smk"
include: "rules/extract.smk"
include: "rules/alignment.smk"
include: "rules/faithfulness.smk"
include: "rules/stats.smk"
include: "rules/geo.smk"
include: "rules/finetune.smk"
include: "rules/captions.smk"
include: "rules/dashboard.smk"
include: "rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
