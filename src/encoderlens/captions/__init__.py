"""Caption geo-profiling: where do a caption dataset's images come from?

translate (non-English captions to English) -> extract place mentions (gazetteer or LLM) ->
retrieve GeoNames candidates (MiniLM + faiss) -> predict a country -> distributions, evaluation,
entity presence (linear SVM on image embeddings) and diversity (Vendi score).
"""
