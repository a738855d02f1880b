rule probes:
    input:
        embeddings="results/{dataset}/{model}/frozen/embeddings.h5",
        manifest="results/{dataset}/manifest.parquet",
    output:
        "results/{dataset}/{model}/probes.parquet",
    params:
        probes=probe_params,
    log:
        "logs/geo/{dataset}/{model}/probes.log",
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
    threads: 2
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/probes.py"


rule attention_stats:
    input:
        attention="results/{dataset}/{model}/{variant}/attention.h5",
        manifest="results/{dataset}/manifest.parquet",
    output:
        per_image="results/{dataset}/{model}/{variant}/attention_stats.parquet",
        per_country="results/{dataset}/{model}/{variant}/attention_stats_by_country.parquet",
    params:
        stats=attention_stats_params,
    log:
        "logs/geo/{dataset}/{model}/{variant}/attention_stats.log",
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/attention_stats.py"


rule retrieval:
    input:
        embeddings="results/{dataset}/{model}/{variant}/embeddings.h5",
        manifest="results/{dataset}/manifest.parquet",
        places=GEONAMES_PLACES,
    output:
        knn="results/{dataset}/{model}/{variant}/knn.parquet",
        predictions="results/{dataset}/{model}/{variant}/knn_predictions.parquet",
        geometry="results/{dataset}/{model}/{variant}/geometry.parquet",
        geometry_bins="results/{dataset}/{model}/{variant}/geometry_bins.parquet",
        gallery="results/{dataset}/{model}/{variant}/gallery.parquet",
        gallery_groups="results/{dataset}/{model}/{variant}/gallery_groups.parquet",
    params:
        retrieval=retrieval_params,
    log:
        "logs/geo/{dataset}/{model}/{variant}/retrieval.log",
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/retrieval.py"
