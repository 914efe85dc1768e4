"""BEM plumbing with a tiny randomly initialised BERT and a locally built WordPiece tokenizer.

Random weights give meaningless probabilities, so these tests check what does not depend
on them: the official input layout (token ids and segment ids), padding, truncation,
EM short-circuiting, the threshold, and how scores flow into the result.
"""

import pytest

from eval.evqa import BEMConfig, BEMExample, TransformersBEM, evaluate_example, load_questions, score_predictions
from eval.evqa.bem import truncate_segments
from eval.predictions import parse_row_index, read_predictions
from ret2vqa.hub import ModelUnavailableError

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the menger family william and mary where does this hotel derive its name from ? , "
    "baker how long animal live in wild years up to 25 what colours are flowers of plant "
    "white pink purple dijon paris rome spain denmark danish one usa"
).split()
VOCAB = SPECIALS + sorted(set(WORDS)) + ["##s", "##ing"]


def build_tiny_bem(directory, type_vocab_size=3):
    """Save a random BertForSequenceClassification + a WordPiece tokenizer built with `tokenizers`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = {token: i for i, token in enumerate(VOCAB)}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    tokenizer = BertTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
    tokenizer.save_pretrained(directory)
    import torch

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=512,
        type_vocab_size=type_vocab_size,
        num_labels=2,
    )
    BertForSequenceClassification(config).save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="session")
def tiny_bem_dir(tmp_path_factory):
    return build_tiny_bem(tmp_path_factory.mktemp("bem3"), type_vocab_size=3)


@pytest.fixture(scope="session")
def tiny_bem(tiny_bem_dir):
    return TransformersBEM(BEMConfig(tiny_bem_dir, device="cpu", batch_size=4))


def ids(*tokens):
    return [VOCAB.index(t) for t in tokens]


README_EXAMPLE = BEMExample(
    question="Where does this hotel derive its name from?",
    reference="the Menger family",
    candidate="William and Mary Menger",
)


def test_input_layout_is_cls_candidate_sep_reference_sep_question_sep(tiny_bem):
    input_ids, segment_ids = tiny_bem.encode(README_EXAMPLE)
    assert input_ids == (
        ids("[CLS]", "william", "and", "mary", "menger", "[SEP]")
        + ids("the", "menger", "family", "[SEP]")
        + ids("where", "does", "this", "hotel", "derive", "its", "name", "from", "?", "[SEP]")
    )
    assert segment_ids == [0] * 6 + [1] * 4 + [2] * 10
    assert tiny_bem.segment_mode == "0/1/2"


def test_wordpiece_and_lowercasing(tiny_bem):
    input_ids, _ = tiny_bem.encode(BEMExample(question="Paris?", reference="ROME", candidate="Families"))
    assert input_ids == ids("[CLS]", "[UNK]", "[SEP]", "rome", "[SEP]", "paris", "?", "[SEP]")
    input_ids, _ = tiny_bem.encode(BEMExample(question="x", reference="years", candidate="pinks"))
    assert input_ids[1:3] == ids("pink", "##s")


def test_padding_to_512_with_attention_mask(tiny_bem):
    batch = tiny_bem.collate(tiny_bem.encode_many([README_EXAMPLE]))
    assert batch["input_ids"].shape == (1, 512)
    assert batch["attention_mask"][0].sum().item() == 20
    assert batch["input_ids"][0, 20:].eq(0).all()  # zero-padded as officially ([PAD] = 0)
    assert batch["token_type_ids"][0, :20].tolist() == [0] * 6 + [1] * 4 + [2] * 10
    assert batch["token_type_ids"][0, 20:].eq(0).all()


def test_padding_does_not_change_the_probability(tiny_bem_dir):
    examples = [README_EXAMPLE, BEMExample("how long does this animal live in the wild?", "25 years", "up to 25 years")]
    padded = TransformersBEM(BEMConfig(tiny_bem_dir, device="cpu", pad_to_max_length=True)).score(examples)
    dynamic = TransformersBEM(BEMConfig(tiny_bem_dir, device="cpu", pad_to_max_length=False)).score(examples)
    assert padded == pytest.approx(dynamic, abs=1e-5)
    assert all(0.0 <= p <= 1.0 for p in padded)


def test_truncate_segments_longest_first():
    (a, b, c), cut = truncate_segments([[1] * 5, [2] * 3, [3] * 1], budget=6)
    assert (len(a), len(b), len(c), cut) == (2, 3, 1, True)
    (a, b, c), cut = truncate_segments([[1], [2], [3]], budget=6)
    assert (a, b, c, cut) == ([1], [2], [3], False)


def test_long_inputs_are_truncated_to_512(tiny_bem_dir):
    bem = TransformersBEM(BEMConfig(tiny_bem_dir, device="cpu"))
    long_question = " ".join(["hotel"] * 600)
    input_ids, segment_ids = bem.encode(BEMExample(long_question, "the menger family", "william"))
    assert len(input_ids) == len(segment_ids) == 512
    assert input_ids[:7] == ids("[CLS]", "william", "[SEP]", "the", "menger", "family", "[SEP]")
    assert input_ids[-1] == VOCAB.index("[SEP]")
    assert segment_ids.count(2) == 512 - 7
    assert bem.truncated == 1
    assert len(bem.score([BEMExample(long_question, "the", "william")])) == 1


def test_two_segment_checkpoint_uses_0_1(tmp_path):
    bem = TransformersBEM(BEMConfig(build_tiny_bem(tmp_path, type_vocab_size=2), device="cpu"))
    _, segment_ids = bem.encode(README_EXAMPLE)
    assert bem.segment_mode == "0/1"
    assert segment_ids == [0] * 6 + [1] * 4 + [1] * 10
    assert bem.describe()["bem_segment_ids"] == "0/1"


def test_unavailable_model_gives_the_offline_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="offline mode is on"):
        TransformersBEM("no-such-org/no-such-bem")


def _predictions(fixtures_dir):
    """The hand-scored predictions (see test_eval_evqa_metric): EM fails on rows 1, 3 and 6 only."""
    return read_predictions(
        fixtures_dir / "evqa" / "evqa_test_sample_predictions.jsonl", "question_id", parse_id=parse_row_index
    )


class Spy:
    """Records what reaches the real model, then delegates to it."""

    def __init__(self, bem):
        self.bem, self.calls = bem, []
        self.name, self.threshold = bem.name, bem.threshold

    def score(self, examples):
        self.calls.append(list(examples))
        self.probabilities = self.bem.score(examples)
        return self.probabilities

    def describe(self):
        return self.bem.describe()


def test_exact_match_short_circuits_bem(tiny_bem, fixtures_dir):
    rows = load_questions(fixtures_dir / "evqa" / "evqa_test_sample.csv")
    spy = Spy(tiny_bem)
    result = score_predictions(_predictions(fixtures_dir), rows, bem=spy)
    # only the three EM failures (rows 1, 3, 6) reach BEM, one query per annotator reference,
    # in one batched call; multi_answer '&&' becomes ',' in the reference BEM sees
    assert spy.calls == [
        [
            BEMExample("Where does this hotel derive its name from?", "the Menger family", "William and Mary Menger"),
            BEMExample("In which city was the designer of this tower born?", "Dijon", "Paris"),
            BEMExample("In which countries is this tree native?", "Portugal,Spain,France,Italy", "Spain"),
        ]
    ]
    by_id = {e.question_id: e for e in result.examples}
    for qid, probability in zip((1, 3, 6), spy.probabilities):
        assert by_id[qid].bem_score == pytest.approx(probability)
        assert by_id[qid].score == float(probability >= 0.5)
    for qid in (0, 2, 4, 5, 7, 8):
        assert by_id[qid].score == 1.0 and by_id[qid].exact_match and by_id[qid].bem_score is None
    summary = result.to_dict()
    assert summary["metric"] == "bem" and "note" not in summary
    assert summary["bem_segment_ids"] == "0/1/2"


def test_threshold_decides_bem_answers(tiny_bem_dir, fixtures_dir):
    rows = load_questions(fixtures_dir / "evqa" / "evqa_test_sample.csv")
    lenient = TransformersBEM(BEMConfig(tiny_bem_dir, device="cpu", threshold=0.0))
    assert score_predictions(_predictions(fixtures_dir), rows, bem=lenient).to_dict()["correct"] == 9
    strict = TransformersBEM(BEMConfig(tiny_bem_dir, device="cpu", threshold=1.01))
    assert score_predictions(_predictions(fixtures_dir), rows, bem=strict).to_dict()["correct"] == 6


def test_evaluate_example_uses_bem_only_after_em_fails(tiny_bem):
    calls = []

    def bem_score(question, reference, candidate):
        calls.append((question, reference, candidate))
        return tiny_bem.score([BEMExample(question, reference, candidate)])[0]

    assert evaluate_example("q", ["Dijon"], "dijon", "2_hop", bem_score) == 1.0
    assert calls == []
    probability = tiny_bem.score([BEMExample("q", "white,pink", "red")])[0]
    assert evaluate_example("q", ["white&&pink"], "red", "multi_answer", bem_score) == float(probability >= 0.5)
    assert calls == [("q", "white,pink", "red")]
