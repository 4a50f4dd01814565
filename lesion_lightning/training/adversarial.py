"""AdversarialSegmentationTask: SLSNet's conditional-GAN training (Sarker et al., ESWA 2021, Sec. 3.4).

Manual optimisation, one generator G (any registered model, `slsnet` by default) and one
`SLSNetDiscriminator` D. Per training batch (pix2pix's schedule, as the paper describes it):

1. **D update** (G fixed): the batch is split in two halves; D sees real pairs (x, y) of the first half and
   fake pairs (x, G(x)) of the second, and minimises eq. 11,
   `BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)` = `-log D(x, y) - log(1 - D(x, G(x)))`
   (the two halves make one weight update; a batch of one image serves as both halves).
2. **G update** (D fixed, already updated): on the whole batch, eq. 7
   `-log D(x, G(x)) + lambda * L1(y, G(x)) + alpha * Jaccard(y, G(x))`, lambda = 0.1, alpha = 0.5
   (eq. 9's Jaccard loss: the `jaccard` loss of `lesion_lightning.losses`).

D ends in logits; `BCE` is `binary_cross_entropy_with_logits` (the paper's sigmoid + log, computed stably).
G(x) enters D as the lesion probability map, with its graph kept for the G update (one G forward per batch).

Both nets use Adam (lr 2e-4, betas (0.5, 0.999)). Lightning forbids `Trainer(gradient_clip_val=...)` with
manual optimisation, so clipping is an option of this task (`gradient_clip_val`, `gradient_clip_algorithm`),
applied through `self.clip_gradients` to each net before its step. AMP (`--amp`, 16-mixed / bf16-mixed)
works through `manual_backward`; DDP too (both nets are submodules of this LightningModule, every parameter
takes part in each backward that needs it); a checkpoint holds both optimizers' states and Lightning
restores both on resume.

Validation, test and predict are inherited from `SegmentationTask`: G alone, the standard metrics, `--tta`.
`<stage>/loss` there is G's supervised part `lambda * L1 + alpha * Jaccard` (D is not run).

Ablations: the generator variants of Table 6 are model kwargs (`use_pam`, `use_cam`, `multiscale`), which D
inherits (BL + PAM adds a PAM to D, BL + CAM a CAM) unless `discriminator_kwargs` says otherwise; the loss
variants of Table 8 are `generator_loss` (`bce`, `bce_l1`, `bce_jaccard`, `bce_l1_jaccard`; "BCE" is the
adversarial term); the input size of Table 7 is `data.image_size`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lesion_lightning.losses import build_loss
from lesion_lightning.models import get_model_spec
from lesion_lightning.models.lesion_head import lesion_probabilities
from lesion_lightning.models.slsnet import SLSNetDiscriminator
from lesion_lightning.training.task import SegmentationTask

GENERATOR_LOSSES = {
    # Table 8: which supervised terms join the adversarial BCE term
    "bce": (),
    "bce_l1": ("l1",),
    "bce_jaccard": ("jaccard",),
    "bce_l1_jaccard": ("l1", "jaccard"),
}
CLIP_ALGORITHMS = ("norm", "value")
_PARENT_ONLY_ARGS = ["loss", "optimizer", "weight_decay", "momentum", "scheduler", "scheduler_kwargs", "warmup_epochs"]
_G_ABLATION_FLAGS = ("use_pam", "use_cam", "pam_reduction", "pam_context")


class AdversarialSegmentationTask(SegmentationTask):
    """SLSNet's GAN training of a segmentation generator against a (image, mask) discriminator.

    Args:
        model: registered generator architecture (default `slsnet`).
        model_kwargs: generator constructor options (Table 6 variants: `use_pam`, `use_cam`, `multiscale`).
        discriminator_kwargs: `SLSNetDiscriminator` options (`base_width`, `use_pam`, `use_cam`, ...);
            `use_pam`/`use_cam` default to the generator's.
        generator_loss: Table 8 variant, `bce`, `bce_l1`, `bce_jaccard` or `bce_l1_jaccard` (default).
        l1_weight: lambda of eq. 7 (0.1).
        jaccard_weight: alpha of eq. 7 (0.5).
        adversarial_weight: weight of the `-log D(x, G(x))` term (1; the paper has none).
        lr: Adam learning rate of G (2e-4).
        lr_d: Adam learning rate of D (default: `lr`).
        betas: Adam betas of both (0.5, 0.999).
        gradient_clip_val: clip each net's gradients before its step (None: no clipping).
        gradient_clip_algorithm: `norm` or `value`.
        threshold: probability threshold of the masks.
        tta: 6-fold test-time augmentation in validate/test/predict.
    """

    def __init__(
        self,
        model: str = "slsnet",
        model_kwargs: dict[str, Any] | None = None,
        discriminator_kwargs: dict[str, Any] | None = None,
        generator_loss: str = "bce_l1_jaccard",
        l1_weight: float = 0.1,
        jaccard_weight: float = 0.5,
        adversarial_weight: float = 1.0,
        lr: float = 2e-4,
        lr_d: float | None = None,
        betas: tuple[float, float] = (0.5, 0.999),
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        threshold: float = 0.5,
        tta: bool = False,
    ) -> None:
        if generator_loss not in GENERATOR_LOSSES:
            raise ValueError(
                f"model.generator_loss: unknown variant {generator_loss!r}; choose one of {', '.join(GENERATOR_LOSSES)}"
            )
        for name, value in (("l1_weight", l1_weight), ("jaccard_weight", jaccard_weight),
                            ("adversarial_weight", adversarial_weight)):
            if value < 0:
                raise ValueError(f"model.{name} must be >= 0, got {value}")
        if lr_d is not None and lr_d <= 0:
            raise ValueError(f"model.lr_d must be positive, got {lr_d}")
        if len(tuple(betas)) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"model.betas must be two values in [0, 1), got {betas}")
        if gradient_clip_val is not None and gradient_clip_val <= 0:
            raise ValueError(f"model.gradient_clip_val must be positive (or null for no clipping), got {gradient_clip_val}")
        if gradient_clip_algorithm not in CLIP_ALGORITHMS:
            raise ValueError(
                f"model.gradient_clip_algorithm: {gradient_clip_algorithm!r}; choose one of {', '.join(CLIP_ALGORITHMS)}"
            )
        supervised = [{"name": "l1", "weight": l1_weight}, {"name": "jaccard", "weight": jaccard_weight}]
        super().__init__(
            model=model, model_kwargs=model_kwargs, loss=supervised, optimizer="adam", lr=lr,
            betas=tuple(betas), threshold=threshold, tta=tta,
        )
        # The parent saved its own arguments too (loss, optimizer, ...): keep only this class's, so the
        # checkpoint's hyperparameters rebuild this task (load_from_checkpoint, inference.load_task).
        self.save_hyperparameters(ignore=_PARENT_ONLY_ARGS)
        self.automatic_optimization = False
        self.generator_terms = GENERATOR_LOSSES[generator_loss]
        self.l1_loss = build_loss("l1")
        self.jaccard_loss = build_loss("jaccard")

        g_kwargs = dict(model_kwargs or {})
        d_kwargs = {k: g_kwargs[k] for k in _G_ABLATION_FLAGS if k in g_kwargs}
        d_kwargs.update(discriminator_kwargs or {})
        d_kwargs.setdefault("in_channels", int(g_kwargs.get("in_channels", get_model_spec(model).input_size[0])))
        try:
            self.discriminator = SLSNetDiscriminator(**d_kwargs)
        except TypeError as err:
            raise ValueError(f"model.discriminator_kwargs: {err}") from None

    def setup(self, stage: str) -> None:
        super().setup(stage)
        # Each of the two backward passes reaches one net only: DDP must be told, or it fails at the first step.
        from pytorch_lightning.strategies import DDPStrategy

        strategy = self.trainer.strategy if self._trainer is not None else None
        if stage == "fit" and isinstance(strategy, DDPStrategy) and not strategy._ddp_kwargs.get("find_unused_parameters"):
            raise ValueError(
                "trainer.strategy: adversarial training updates G and D by separate backward passes; use "
                "--trainer.strategy=ddp_find_unused_parameters_true (or ddp_spawn_find_unused_parameters_true)"
            )

    # -- one batch -------------------------------------------------------------------------------
    @staticmethod
    def _halves(n: int) -> tuple[slice, slice]:
        """Real half, fake half of a batch of n (n = 1: the one image is both)."""
        if n == 1:
            return slice(0, 1), slice(0, 1)
        return slice(0, n // 2), slice(n // 2, n)

    def _clip(self, optimizer: Any) -> None:
        if self.hparams.gradient_clip_val is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.gradient_clip_val,
                                gradient_clip_algorithm=self.hparams.gradient_clip_algorithm)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x, y = batch["image"], batch["mask"]
        if y.ndim == 3:
            y = y.unsqueeze(1)
        y = y.to(x.dtype if x.is_floating_point() else torch.float32)
        opt_g, opt_d = self.optimizers()
        n = x.shape[0]
        real, fake = self._halves(n)

        logits = self.model(x)  # one G forward: detached for D, with its graph for G's update
        probs = lesion_probabilities(logits.float())

        # 1. discriminator (eq. 11): real pairs of one half, fake pairs of the other, one update
        self.toggle_optimizer(opt_d)
        d_real = self.discriminator(x[real], y[real]).float()
        d_fake = self.discriminator(x[fake], probs[fake].detach()).float()
        loss_d_real = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
        loss_d_fake = F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        loss_d = loss_d_real + loss_d_fake
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        self._clip(opt_d)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        # 2. generator (eq. 7) against the updated D
        self.toggle_optimizer(opt_g)
        d_gen = self.discriminator(x, probs).float()
        loss_adv = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))  # -log D(x, G(x))
        loss_l1 = self.l1_loss(logits, y)
        loss_jaccard = self.jaccard_loss(logits, y)
        hp = self.hparams
        loss_g = hp.adversarial_weight * loss_adv
        if "l1" in self.generator_terms:
            loss_g = loss_g + hp.l1_weight * loss_l1
        if "jaccard" in self.generator_terms:
            loss_g = loss_g + hp.jaccard_weight * loss_jaccard
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        self._clip(opt_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        # logging (train/loss = G's total, as for the supervised tasks) and the train metrics of G
        self.metrics["train_metrics"].update(probs.detach(), batch["mask"], ids=batch.get("id"))
        values = {
            "train/loss": loss_g, "train/loss_g": loss_g, "train/loss_d": loss_d,
            "train/loss_d_real": loss_d_real, "train/loss_d_fake": loss_d_fake,
            "train/loss_g_adv": loss_adv, "train/loss_g_l1": loss_l1, "train/loss_g_jaccard": loss_jaccard,
            "train/d_real": torch.sigmoid(d_real).mean(), "train/d_fake": torch.sigmoid(d_fake).mean(),
        }
        for key, value in values.items():
            self.log(key, value.detach(), on_step=key in ("train/loss", "train/loss_d"), on_epoch=True,
                     prog_bar=key in ("train/loss_g", "train/loss_d"), batch_size=n, sync_dist=True)
        return loss_g.detach()

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        betas = tuple(hp.betas)
        opt_g = torch.optim.Adam(self.model.parameters(), lr=hp.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr_d or hp.lr, betas=betas)
        return [opt_g, opt_d]
