"""Which statement a question is asked with: the demo cuts its 5 retrieved chunks to the one statement nearest the
question by MiniLM's cosine (`ml.focused_context`). Here other rankers choose that statement from the same
statements, and each is counted by the questions whose chosen statement states their answer
(`facts.judge.passages_state`), before any model answers.

- `cosine`: the product's choice.
- `cosine_plus_chunk`: the statement's cosine plus its chunk's, so a statement of a near chunk ranks higher.
- `query_likelihood`: the cosine's top 8 re-ranked by log P(question | statement) under the base model (UPR, Sachan
  et al. 2022).
- `tuned_minilm`: MiniLM fine-tuned on the train split's questions, each with a statement of its 5 chunks that
  states its answer and one that does not (sentence-transformers' MultipleNegativesRankingLoss, 5 epochs).
- `bm25`: BM25 (bm25s, Lucene's variant, English stop words, Snowball's English stemmer), its term weights taken
  from the question's own candidate statements, so it needs nothing but the passages, as serving has them; ties go
  to the cosine.
- `bm25_knowledge_base`: the same, its term weights taken from every statement of the knowledge base.
- `hybrid_rrf`, `hybrid_rrf_knowledge_base`: reciprocal rank fusion (Cormack et al. 2009, k = 60) of the cosine's and
  that BM25's ranks, the usual way to join a dense and a lexical retriever.

The choice is read on the feedback split, with the questions gained and lost against `cosine` and McNemar's exact
p; the test split is reported beside it.

    python -m bench.statement_ranking [--out statement_ranking]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from bench.common import write_result
from bench.training_levers import MODEL, sample_index
from cli.demo import SAMPLE_DATASET
from core.settings import Settings
from facts.judge import passages_state
from facts.stats import mcnemar_exact
from knowledge.embeddings import embed, minilm_dir
from knowledge.index import KnowledgeIndex
from ml.examples import Example
from ml.generation import statements
from ml.optimizer import clean_dataset, split_examples
from schemas.checks import parse_checks

TOP_K = 5  # the demo's chunks per question
RERANKED = 8  # the cosine's top statements the query likelihood re-ranks
RRF_K = 60  # reciprocal rank fusion's constant, as its paper sets it


@dataclass(frozen=True)
class Tuning:
    epochs: int = 5
    learning_rate: float = 5e-5
    batch_size: int = 16
    seed: int = 0


TUNING = Tuning()


@dataclass(frozen=True)
class Candidates:
    example: Example
    statements: list[str]  # the statements of the question's top-k chunks, in order, without repeats
    chunk_similarity: list[float]  # each statement's chunk's cosine with the question


def candidates(index: KnowledgeIndex, examples: list[Example]) -> list[Candidates]:
    vectors = embed([e.question for e in examples])
    out = []
    for example, hits in zip(examples, index.search(vectors, TOP_K), strict=True):
        seen: dict[str, float] = {}
        for hit in hits:
            for statement in statements(hit.chunk.text):
                seen.setdefault(statement, hit.score)
        out.append(Candidates(example, list(seen), list(seen.values())))
    return out


Ranker = Callable[[Candidates], str]


def cosine_ranker(embedder: Callable[[list[str]], np.ndarray], chunk_weight: float = 0.0) -> Ranker:
    def choose(c: Candidates) -> str:
        question = embedder([c.example.question])[0]
        scores = embedder(c.statements) @ question + chunk_weight * np.asarray(c.chunk_similarity)
        return c.statements[int(np.argmax(scores))]

    return choose


def query_likelihood_ranker(model, tokenizer) -> Ranker:
    """The cosine's top `RERANKED` statements, re-ranked by the mean log-probability of the question's tokens after
    "Passage: <statement> ... Question:"."""
    import torch

    @torch.no_grad()
    def choose(c: Candidates) -> str:
        question = embed([c.example.question])[0]
        top = [c.statements[i] for i in np.argsort(-(embed(c.statements) @ question))[:RERANKED]]
        prefixes = [f"Passage: {s}\nPlease write a question based on this passage.\nQuestion:" for s in top]
        scores = []
        for prefix in prefixes:
            start = len(tokenizer(prefix)["input_ids"])
            ids = tokenizer(prefix + " " + c.example.question, return_tensors="pt")["input_ids"]
            logits = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            taken = logits.gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)[start - 1 :]
            scores.append(float(taken.mean()))
        return top[int(np.argmax(scores))]

    return choose


def tuned_minilm(train: list[Candidates]) -> tuple[Callable[[list[str]], np.ndarray], dict]:
    """MiniLM fine-tuned on (question, a statement that states its answer, one that does not) from the train split."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    rng = random.Random(TUNING.seed)
    torch.manual_seed(TUNING.seed)
    triples = []
    for c in train:
        checks = parse_checks(c.example.checks)
        stating = [s for s in c.statements if passages_state([s], checks) is True]
        other = [s for s in c.statements if passages_state([s], checks) is False]
        if stating and other:
            triples.append((c.example.question, stating[0], rng.choice(other)))
    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    loss = MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=TUNING.learning_rate)
    started = time.perf_counter()
    model.train()
    for _ in range(TUNING.epochs):
        rng.shuffle(triples)
        for start in range(0, len(triples), TUNING.batch_size):
            batch = list(zip(*triples[start : start + TUNING.batch_size], strict=True))
            value = loss([model.preprocess(list(column)) for column in batch], None)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
    model.eval()
    trained = {"triples": len(triples), "train_seconds": round(time.perf_counter() - started, 1), **asdict(TUNING)}
    return lambda texts: model.encode(texts, normalize_embeddings=True), trained


LexicalScorer = Callable[[str, list[str]], np.ndarray]


def _tokens(texts: list[str]) -> list[list[str]]:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer.stemWords, return_ids=False, show_progress=False)


def bm25_over_candidates(question: str, texts: list[str]) -> np.ndarray:
    """BM25 of each text for the question, the terms weighted by how rare they are among these texts."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(_tokens(texts), show_progress=False)
    return retriever.get_scores(_tokens([question])[0])


def bm25_over(corpus: list[str]) -> LexicalScorer:
    """BM25 of texts of `corpus` for a question, the terms weighted by how rare they are in the whole corpus."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(_tokens(corpus), show_progress=False)
    row = {text: i for i, text in enumerate(corpus)}

    def scores(question: str, texts: list[str]) -> np.ndarray:
        return retriever.get_scores(_tokens([question])[0])[[row[t] for t in texts]]

    return scores


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Each position's rank, 1 for the highest score."""
    ranks = np.empty(len(scores), dtype=int)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return ranks


def lexical_ranker(lexical: LexicalScorer, fuse: bool, embedder: Callable[[list[str]], np.ndarray] = embed) -> Ranker:
    """The statement BM25 ranks first (ties to the cosine), or, with `fuse`, the first by reciprocal rank fusion of
    the cosine's and BM25's ranks."""

    def choose(c: Candidates) -> str:
        cosine = embedder(c.statements) @ embedder([c.example.question])[0]
        lexical_scores = lexical(c.example.question, c.statements)
        if fuse:
            fused = 1 / (RRF_K + _ranks(cosine)) + 1 / (RRF_K + _ranks(lexical_scores))
            return c.statements[int(np.argmax(fused + 1e-9 * cosine))]
        return c.statements[int(np.lexsort((-cosine, -lexical_scores))[0])]

    return choose


def knowledge_base_statements(index: KnowledgeIndex) -> list[str]:
    return list(dict.fromkeys(s for chunk in index.chunks for s in statements(chunk.text)))


def stated_ids(ranker: Ranker, split: list[Candidates]) -> list[str]:
    return [c.example.id for c in split if passages_state([ranker(c)], parse_checks(c.example.checks)) is True]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="statement_ranking")
    args = parser.parse_args()
    from ml.base_model import load_model_and_tokenizer

    index = sample_index()
    splits = split_examples(clean_dataset(SAMPLE_DATASET, "jsonl").examples)
    by_split = {s: candidates(index, getattr(splits, s)) for s in ("train", "feedback", "test")}
    model, tokenizer = load_model_and_tokenizer(MODEL, Settings().model_cache_dir)
    model.eval()
    tuned_embed, tuning = tuned_minilm(by_split["train"])
    corpus_bm25 = bm25_over(knowledge_base_statements(index))
    rankers: dict[str, Ranker] = {
        "cosine": cosine_ranker(embed),
        "cosine_plus_chunk": cosine_ranker(embed, chunk_weight=1.0),
        "query_likelihood": query_likelihood_ranker(model, tokenizer),
        "tuned_minilm": cosine_ranker(tuned_embed),
        "bm25": lexical_ranker(bm25_over_candidates, fuse=False),
        "bm25_knowledge_base": lexical_ranker(corpus_bm25, fuse=False),
        "hybrid_rrf": lexical_ranker(bm25_over_candidates, fuse=True),
        "hybrid_rrf_knowledge_base": lexical_ranker(corpus_bm25, fuse=True),
    }
    figures: dict[str, dict] = {}
    for split in ("feedback", "test"):
        in_chunks = [(c, passages_state(c.statements, parse_checks(c.example.checks))) for c in by_split[split]]
        lookups = [c for c, state in in_chunks if state is not None]
        stated_in_chunks = sum(state is True for _, state in in_chunks)
        stated = {name: set(stated_ids(ranker, lookups)) for name, ranker in rankers.items()}
        for name, ids in stated.items():
            gained, lost = len(ids - stated["cosine"]), len(stated["cosine"] - ids)
            figures.setdefault(name, {})[split] = {
                "stated": len(ids),
                "questions_with_a_value": len(lookups),
                "stated_in_the_5_chunks": stated_in_chunks,
                "against_cosine": {"gained": gained, "lost": lost, "mcnemar_p": round(mcnemar_exact(gained, lost), 4)},
            }
    write_result(args.out, {"dataset": SAMPLE_DATASET.name, "top_k": TOP_K, "tuning": tuning, "rankers": figures})


if __name__ == "__main__":
    main()
