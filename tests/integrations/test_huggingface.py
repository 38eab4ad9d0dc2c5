"""RecordingTrainer: the Hugging Face Trainer's own training (AdamW, its decay groups, linear
warmup, max_grad_norm, gradient accumulation), recorded: the same model as the plain Trainer
bit for bit in float64, literal retraining, and the oracle's scores (tests/oracle.py)."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import sgdinfluence as sgi  # noqa: E402
from oracle import unrolled_optimizer  # noqa: E402
from sgdinfluence.errors import Error  # noqa: E402

N, L, LR, WARMUP = 32, 8, 0.05, 2


def bert(**config):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, num_labels=2, **config)
    return transformers.BertForSequenceClassification(config).double()


def items(n, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (n, L), generator=g)
    mask = (torch.arange(L) < torch.randint(4, L + 1, (n, 1), generator=g)).long()
    labels = ((ids[:, 0] > 25) ^ (torch.rand(n, generator=g) < 0.2)).long()
    return [{"input_ids": ids[i] * mask[i], "attention_mask": mask[i], "labels": labels[i]}
            for i in range(n)]


def arguments(tmp_path, **options):
    return transformers.TrainingArguments(**{
        "output_dir": str(tmp_path), "per_device_train_batch_size": 8, "num_train_epochs": 2,
        "learning_rate": LR, "warmup_steps": WARMUP, "weight_decay": 0.01, "optim": "adamw_torch",
        "max_grad_norm": 1.0, "report_to": [], "save_strategy": "no", "logging_strategy": "no",
        "disable_tqdm": True, **options})


def trained(trainer_class, tmp_path, model, scaled=None, **options):
    trainer = trainer_class(model=model, args=arguments(tmp_path, **options),
                            train_dataset=items(N, 0))
    if scaled is not None:
        trainer.loss_is_scaled_for_ga = scaled
    trainer.train()
    return trainer


@pytest.mark.parametrize("accumulation", [1, 2])
def test_the_recorded_trainer_trains_as_the_plain_one_and_matches_the_oracle(tmp_path,
                                                                            accumulation):
    model = bert()
    options = dict(gradient_accumulation_steps=accumulation, scaled=False)
    plain = trained(transformers.Trainer, tmp_path, copy.deepcopy(model), **options)
    recording = trained(sgi.integrations.RecordingTrainer, tmp_path, copy.deepcopy(model),
                        **options)
    run = recording.run
    steps = 2 * N // (8 * accumulation)
    assert run.num_steps == steps and run.micro == ([[0, 2]] if accumulation == 2 else [])
    for p, q in zip(plain.model.parameters(), recording.model.parameters(), strict=True):
        assert torch.equal(p, q)
    for p, q in zip(run.retrain([]).parameters(), run.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)

    # the oracle: AdamW unrolled over the recorded batches with the Trainer's decay groups and
    # its linear schedule with warmup written out here
    start = copy.deepcopy(run.model)
    start.load_state_dict(run.initial_state)
    decayed = set(plain.get_decay_parameter_names(model))
    names = [n for n, _ in model.named_parameters()]
    rates = [LR * t / WARMUP if t < WARMUP else LR * (steps - t) / (steps - WARMUP)
             for t in range(steps)]
    X, y = recording.tensors(items(N, 0))
    val = recording.tensors(items(20, 1))
    with sdpa_kernel(SDPBackend.MATH):  # differentiable twice; flash attention on the CPU not
        expected, final = unrolled_optimizer(
            start, X, y, lambda o, t: F.cross_entropy(o, t, reduction="none"), run.batches,
            [[r] * len(names) for r in rates],
            lambda forward: F.cross_entropy(forward(val[0]), val[1]), optimizer="adamw",
            weight_decay=[0.01 if n in decayed else 0.0 for n in names], max_grad_norm=1.0,
            micro=accumulation)
    for p, q in zip(run.model.parameters(), final, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    scores = sgi.influence(run, val)
    assert np.abs(expected.numpy()).max() > 1e-4
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-8


def test_the_default_fused_adamw_is_recorded_unfused_with_one_warning(tmp_path):
    model = bert()
    plain = trained(transformers.Trainer, tmp_path, copy.deepcopy(model), optim="adamw_torch_fused")
    with pytest.warns(UserWarning, match=r"optim='adamw_torch_fused'\) replaced by 'adamw_torch'"):
        recording = sgi.integrations.RecordingTrainer(
            model=copy.deepcopy(model),
            args=arguments(tmp_path, optim="adamw_torch_fused"), train_dataset=items(N, 0))
    recording.train()
    for p, q in zip(plain.model.parameters(), recording.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)  # fused rounds otherwise


def refusal(tmp_path, options=(), dataset=None, scaled=None, **kwargs):
    trainer = sgi.integrations.RecordingTrainer(
        model=bert(), args=arguments(tmp_path, **dict(options)),
        train_dataset=dataset or items(N, 0), **kwargs)
    if scaled is not None:
        trainer.loss_is_scaled_for_ga = scaled
    trainer.train()


def ragged():
    data = items(N, 0)
    return [{k: v[:L - i % 2] if k != "labels" else v for k, v in d.items()}
            for i, d in enumerate(data)]


REFUSALS = {  # what a run cannot replay -> the one line naming the fix
    "accumulation summing the means": (
        dict(options=dict(gradient_accumulation_steps=2)),
        r"the Trainer sums the micro-batches' mean losses here \(BertForSequenceClassification's "
        r"loss ignores num_items_in_batch\), 2 times .* set trainer.loss_is_scaled_for_ga = False"),
    "accumulation over unequal micro-batches": (
        dict(options=dict(gradient_accumulation_steps=2, per_device_train_batch_size=5),
             scaled=False),
        "weighing the 2 instances of the epoch's last, smaller micro-batch more than the "
        "others; set dataloader_drop_last=True or a batch size that divides the 32 instances"),
    "dynamic padding": (dict(dataset=ragged()),
                        r"item \d+'s input_ids has length 7, item 0's 8; a run reads fixed-shape "
                        r"instances: tokenize with padding='max_length'"),
    "an optimizer torch's AdamW is not": (
        dict(options=dict(optim="adafactor")),
        r"optim='adafactor'\) is not recorded: .* use optim='adamw_torch'"),
    "label smoothing": (dict(options=dict(label_smoothing_factor=0.1)),
                        r"set it to 0 and pass RecordingTrainer\(loss=lambda o, t: F.cross_entropy"
                        r"\(o, t, label_smoothing=0.1, reduction='none'\)\)"),
    "a loss function": (dict(compute_loss_func=lambda o, t, num_items_in_batch=None: 0),
                        r"compute_loss_func is not recorded: pass RecordingTrainer\(loss=\)"),
    "a masking collator": (dict(data_collator=lambda features: features),
                           "data_collator <lambda> changes the batch"),
    "NEFTune": (dict(options=dict(neftune_noise_alpha=5.0)),
                "neftune_noise_alpha adds noise through a hook removed after training"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_what_a_run_cannot_replay_is_refused_naming_the_fix(tmp_path, case):
    kwargs, message = REFUSALS[case]
    with pytest.raises(Error, match=message) as refused:
        refusal(tmp_path, **kwargs)
    assert "\n" not in str(refused.value)


def test_resuming_from_a_checkpoint_is_refused(tmp_path):
    trainer = sgi.integrations.RecordingTrainer(model=bert(), args=arguments(tmp_path),
                                                train_dataset=items(N, 0))
    with pytest.raises(Error, match="a run is recorded from its first step: train without "
                                    "resume_from_checkpoint"):
        trainer.train(resume_from_checkpoint=True)
