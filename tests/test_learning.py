"""Learning: trained retrievers beat random ones by a wide margin on data with planted structure."""
import torch

from tandem.config import Config
from tandem.data.dataset import preprocess
from tandem.data.splits import split_general, split_sequential
from tandem.data.synthetic import low_rank_interactions, markov_interactions
from tandem.losses import sampled_softmax
from tandem.models.retrievers.mf import MF
from tandem.models.retrievers.sasrec import SASRec
from tandem.sampling import UniformSampler
from tandem.training.schemes import RetrieverScheme
from tandem.training.trainer import Trainer, TrainerSettings


def fit(scheme, split, task, epochs, lr=0.01):
    config = Config(task=task)
    config.train.epochs, config.train.lr, config.train.batch_size = epochs, lr, 256
    config.train.progress, config.train.patience = False, epochs
    trainer = Trainer(TrainerSettings.of(config), scheme, split)
    before = trainer.evaluate("test")["ndcg@10"]
    result = trainer.fit()
    return before, result.test["ndcg@10"]


def test_mf_learns_planted_low_rank_structure():
    torch.manual_seed(0)
    data = preprocess(low_rank_interactions(300, 200, per_user=30, rank=4, sharpness=5.0, seed=0),
                      min_user_interactions=1, min_item_interactions=1)
    split = split_general(data)
    model = MF(data.num_users, data.num_items, embedding_dim=16)
    random_ndcg, trained_ndcg = fit(RetrieverScheme(model, UniformSampler(data.num_items), sampled_softmax, 20), split, "general", 15)
    assert trained_ndcg > 3 * random_ndcg and trained_ndcg > 0.15, (random_ndcg, trained_ndcg)


def test_sasrec_learns_planted_sequential_structure():
    torch.manual_seed(0)
    data = preprocess(markov_interactions(200, 300, per_user=30, max_hop=3, noise=0.05, seed=0),
                      min_user_interactions=1, min_item_interactions=1)
    split = split_sequential(data, max_seq_len=10)
    model = SASRec(data.num_items, embedding_dim=32, dropout=0.1, max_seq_len=10)
    random_ndcg, trained_ndcg = fit(RetrieverScheme(model, UniformSampler(data.num_items), sampled_softmax, 20), split, "sequential", 8, lr=0.005)
    assert trained_ndcg > 5 * random_ndcg and trained_ndcg > 0.2, (random_ndcg, trained_ndcg)
