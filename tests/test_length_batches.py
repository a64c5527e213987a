"""data.bucket_by_length: training batches of similar text length, every example once per
epoch, the order fixed by (seed, epoch); evaluation longest first."""

import torch

from emoclip.data.datamodule import EmotionDataModule
from emoclip.data.length_batches import LengthBucketSampler
from emoclip.data.sources.synthetic import SyntheticEmotions
from emoclip.data.tokenizer import train_word_tokenizer


def test_each_epoch_is_a_permutation_in_batches_of_similar_length():
    lengths = torch.randint(1, 200, (1000,)).tolist()
    sampler = LengthBucketSampler(lengths, batch_size=16, shuffle=True, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(1000))
    batches = [order[i : i + 16] for i in range(0, 1000, 16)]
    padding = sum(16 * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)
    shuffled = torch.randperm(1000, generator=torch.Generator().manual_seed(0)).tolist()
    random_padding = sum(
        16 * max(lengths[i] for i in shuffled[j : j + 16])
        - sum(lengths[i] for i in shuffled[j : j + 16])
        for j in range(0, 1000, 16)
    )
    assert padding < random_padding / 5
    assert len(batches[-1]) == 1000 % 16  # the one short batch comes last
    sampler.set_epoch(1)
    assert list(sampler) != order
    sampler.set_epoch(0)
    assert list(sampler) == order  # a resumed epoch draws the same batches


def test_evaluation_runs_longest_first_and_training_loaders_use_it(tmp_path):
    lengths = [3, 9, 1, 9, 4]
    assert list(LengthBucketSampler(lengths, 2, shuffle=False)) == [1, 3, 4, 0, 2]
    dataset = SyntheticEmotions(train_size=70, val_size=14, test_size=14)
    dm = EmotionDataModule(dataset, dataset.classes, ["text"], batch_size=8, bucket_by_length=True)
    dm.set_preprocessing(train_word_tokenizer(dm.train_texts()))
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    lengths = batch["attention_mask"].sum(1)
    assert torch.equal(lengths, lengths.sort(descending=True).values)
    seen = torch.cat([b["index"] for b in dm.train_dataloader()])
    assert sorted(seen.tolist()) == list(range(70))
