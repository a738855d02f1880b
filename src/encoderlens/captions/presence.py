"""Entity presence: does the image really show the entity its caption names?

Per entity, a linear SVM (scikit-learn `LinearSVC`, features standardised) is trained on the image
embeddings with the caption's mention as the (noisy) label: positives are images whose caption names
the entity, negatives those whose (English or translated) caption names none of the configured entities (captions naming
another entity are left out of that entity's training, as their image may show both). Its
cross-validated accuracy (stratified k-fold) says how well the embeddings separate the entity.
Each image's flag comes from the fold model that did not see it (`cross_val_predict`), so a flag is
never a model's verdict on its own training example.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

PRESENCE_COLUMNS = ["image_id", "entity", "mentioned", "shows_entity", "decision"]
SVM_COLUMNS = ["entity", "model", "n_positive", "n_negative", "folds", "cv_accuracy",
               "cv_balanced_accuracy", "majority_accuracy"]


def entity_presence(predictions: pd.DataFrame, ids: list[str], features: np.ndarray, entities,
                    model: str, folds: int = 5, C: float = 1.0, seed: int = 0):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    position = {image_id: i for i, image_id in enumerate(ids)}
    named = predictions[predictions["image_id"].isin(position)]
    mentioned = {entity: set(named.loc[named["entity"] == entity, "image_id"]) for entity in entities}
    # a caption left in another language cannot say that its image shows no entity
    readable = named["translated"].astype(bool) | named["language"].map(_is_english)
    none = set(named.loc[(named["entity"] == "") & readable, "image_id"])
    presence, summary = [], []
    for entity in entities:
        positives, negatives = sorted(mentioned[entity]), sorted(none)
        members = positives + negatives
        labels = np.array([1] * len(positives) + [0] * len(negatives))
        k = min(folds, len(positives), len(negatives))
        if k < 2:
            log.warning("entity %s: %d positive and %d negative images; too few for a %d-fold SVM",
                        entity, len(positives), len(negatives), folds)
            summary.append((entity, model, len(positives), len(negatives), 0, np.nan, np.nan, np.nan))
            continue
        x = features[[position[i] for i in members]]
        # liblinear shuffles its coordinate order: without a fixed random_state two runs differ
        classifier = make_pipeline(StandardScaler(), LinearSVC(C=C, max_iter=20000, random_state=seed))
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        decision = cross_val_predict(classifier, x, labels, cv=splitter, method="decision_function")
        predicted = (decision > 0).astype(int)
        majority = max(labels.mean(), 1 - labels.mean())
        summary.append((entity, model, len(positives), len(negatives), k,
                        accuracy_score(labels, predicted), balanced_accuracy_score(labels, predicted),
                        majority))
        presence += [(i, entity, bool(label), bool(flag), float(d))
                     for i, label, flag, d in zip(members, labels, predicted, decision)]
    return (pd.DataFrame(presence, columns=PRESENCE_COLUMNS),
            pd.DataFrame(summary, columns=SVM_COLUMNS).astype({"folds": "int64"}))


def _is_english(language: str) -> bool:
    from .translate import TARGET_FLORES, flores_code

    try:
        return flores_code(str(language)) == TARGET_FLORES
    except ValueError:
        return False
