"""The seq2seq translation backend on a real (tiny, random-initialised) NLLB checkpoint built offline:
an NLLB tokenizer (BPE trained here on a few captions, with the 202 FLORES-200 language tokens) and an
M2M100ForConditionalGeneration, saved with save_pretrained and loaded through the backend's own
AutoTokenizer / AutoModelForSeq2SeqLM.from_pretrained, as facebook/nllb-200-distilled-600M is."""

import json

import pandas as pd
import pytest

from encoderlens.captions.translate import Seq2SeqTranslator, translate_captions

CAPTIONS = pd.DataFrame({
    "image_id": ["en1", "hi1", "es1", "es2", "el1", "en2", "ja1", "es3"],
    "caption": ["A red house in Windhoek, Namibia.", "विंडहोक में एक लाल घर",
                "Una iglesia grande en Montevideo", "Una casa", "Ένα σπίτι στην Αθήνα", "A car",
                "東京の大きな家", "Un coche rojo"],
    "language": ["en", "hi", "es", "spa_Latn", "el", "eng_Latn", "ja", "es"],
})
SOURCE = {"hi1": "hin_Deva", "es1": "spa_Latn", "es2": "spa_Latn", "es3": "spa_Latn",
          "el1": "ell_Grek", "ja1": "jpn_Jpan"}
MAX_NEW_TOKENS = 6


@pytest.fixture(scope="module")
def tiny_nllb(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    # NLLB's own pre-tokenisation (Metaspace "▁", as its SentencePiece model), BPE merges learnt here
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bpe.train_from_iterator(CAPTIONS["caption"].tolist() * 3, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False))
    try:  # transformers 5: NllbTokenizer is tokenizers-backed and takes the vocabulary and merges
        learnt = json.loads(bpe.to_str())["model"]
        tokenizer = NllbTokenizer(vocab=learnt["vocab"], merges=[tuple(pair) for pair in learnt["merges"]])
    except (TypeError, ImportError):  # transformers 4: the fast tokenizer reads a tokenizer.json
        from transformers import NllbTokenizerFast

        trained = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
        bpe.save(str(trained))
        tokenizer = NllbTokenizerFast(tokenizer_file=str(trained))
    folder = tmp_path_factory.mktemp("nllb") / "tiny-nllb"
    tokenizer.save_pretrained(folder)
    # untied output head, wide initialisation: outputs that depend on the input (a tied head at the
    # default 0.02 only repeats the forced language token, which decodes to "")
    config = M2M100Config(vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                          decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=1, bos_token_id=0,
                          eos_token_id=2, decoder_start_token_id=2, tie_word_embeddings=False,
                          init_std=0.5, dropout=0.0)
    torch.manual_seed(0)
    M2M100ForConditionalGeneration(config).eval().save_pretrained(folder)
    return folder


class Recorded:
    """The translator with its model's generate recorded (and still run)."""

    def __init__(self, folder):
        self.translator = Seq2SeqTranslator(str(folder), max_new_tokens=MAX_NEW_TOKENS)
        self.calls = []
        generate = self.translator.model.generate

        def recording(**kwargs):
            output = generate(**kwargs)
            self.calls.append((kwargs, output))
            return output

        self.translator.model.generate = recording


def test_the_checkpoint_loads_through_the_backends_from_pretrained(tiny_nllb):
    from transformers import M2M100ForConditionalGeneration

    translator = Seq2SeqTranslator(str(tiny_nllb))
    assert type(translator.tokenizer).__name__ in ("NllbTokenizer", "NllbTokenizerFast")
    assert isinstance(translator.model, M2M100ForConditionalGeneration) and not translator.model.training
    assert translator.target_id == translator.tokenizer.convert_tokens_to_ids("eng_Latn")
    codes = [translator.tokenizer.convert_tokens_to_ids(c) for c in set(SOURCE.values()) | {"eng_Latn"}]
    assert translator.tokenizer.unk_token_id not in codes and len(set(codes)) == 5


def test_translation_sends_flores_codes_forces_english_and_keeps_order(tiny_nllb):
    recorded = Recorded(tiny_nllb)
    tokenizer = recorded.translator.tokenizer
    english = tokenizer.convert_tokens_to_ids("eng_Latn")
    result = translate_captions(CAPTIONS, "seq2seq", batch_size=2, translator=recorded.translator)

    # one output row per caption, in the input's order; English rows untouched, byte for byte
    assert result["image_id"].tolist() == CAPTIONS["image_id"].tolist()
    assert result["language"].tolist() == CAPTIONS["language"].tolist()
    assert result["translated"].tolist() == [image_id in SOURCE for image_id in CAPTIONS["image_id"]]
    for image_id in ("en1", "en2"):
        row = CAPTIONS["image_id"] == image_id
        assert result.loc[row, "text"].item() == CAPTIONS.loc[row, "caption"].item()

    # per language, batches of at most 2 (Spanish: 3 rows in 2 batches), longest first; English
    # never reaches the model; the source token leads each input, the target token is forced
    sent = {}
    for kwargs, output in recorded.calls:
        ids = kwargs["input_ids"]
        sources = {tokenizer.convert_ids_to_tokens(int(i)) for i in ids[:, 0]}
        assert len(sources) == 1 and len(ids) <= 2
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        sent.setdefault(sources.pop(), []).append(texts)
        assert kwargs["forced_bos_token_id"] == english
        assert (output[:, 0] == recorded.translator.model.config.decoder_start_token_id).all()
        assert (output[:, 1] == english).all()  # the forced first token reached generate
        assert output.shape[1] <= 1 + MAX_NEW_TOKENS
    assert sent == {
        "ell_Grek": [["Ένα σπίτι στην Αθήνα"]],
        "hin_Deva": [["विंडहोक में एक लाल घर"]],
        "jpn_Jpan": [["東京の大きな家"]],
        "spa_Latn": [["Una iglesia grande en Montevideo", "Un coche rojo"], ["Una casa"]],
    }

    # each row holds its own caption's translation: the same as translating that caption alone
    # (batched with padding or not), and the random model's outputs differ between captions
    alone = {image_id: recorded.translator([caption], SOURCE[image_id])[0]
             for image_id, caption in zip(CAPTIONS["image_id"], CAPTIONS["caption"]) if image_id in SOURCE}
    assert dict(zip(result["image_id"], result["text"])) == {
        **dict(zip(CAPTIONS["image_id"], CAPTIONS["caption"])), **alone}
    assert len(set(alone.values())) >= 4


def test_the_backend_builds_its_own_translator_from_the_folder(tiny_nllb):
    table = CAPTIONS.iloc[[1, 2, 0]].reset_index(drop=True)
    built = translate_captions(table, "seq2seq", model=str(tiny_nllb), batch_size=4,
                               max_new_tokens=MAX_NEW_TOKENS)
    given = translate_captions(table, "seq2seq", batch_size=1,
                               translator=Seq2SeqTranslator(str(tiny_nllb), max_new_tokens=MAX_NEW_TOKENS))
    assert built.equals(given) and built["translated"].tolist() == [True, True, False]
    # all-English tables never load a model (a folder that does not exist is not opened)
    english = translate_captions(table.iloc[[2]], "seq2seq", model=str(tiny_nllb / "missing"))
    assert english["text"].tolist() == [table.loc[2, "caption"]]


def test_a_language_the_tokenizer_lacks_is_named(tiny_nllb):
    translator = Seq2SeqTranslator(str(tiny_nllb))
    with pytest.raises(ValueError, match="no language token 'xxx_Latn'"):
        translator(["Una casa"], "xxx_Latn")
    with pytest.raises(ValueError, match="needs captions.translation.model"):
        Seq2SeqTranslator(None)
