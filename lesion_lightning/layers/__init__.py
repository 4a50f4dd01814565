"""Reusable building blocks shared by the architectures (one implementation of each).

Each block lives in a module of this package; re-export it here so models import from
`lesion_lightning.layers`.
"""

from lesion_lightning.layers.aspp import ASPP  # noqa: E402,F401
from lesion_lightning.layers.attention import CBAM, ChannelAttention, PooledUnpooledAttention, SpatialAttention, pool_unpool_residual  # noqa: E402,F401
from lesion_lightning.layers.conv import ConvBNAct, DepthwiseSeparableConv, depthwise_conv, pad_to_multiple, same_padding  # noqa: E402,F401
from lesion_lightning.layers.boundary import BoundaryAwareAttention, boundary_map, edge_kernels  # noqa: E402,F401
from lesion_lightning.layers.danet import CAM, PAM  # noqa: E402,F401
from lesion_lightning.layers.ema import EMAttention  # noqa: E402,F401
from lesion_lightning.layers.factorized import FAM, NonBottleneck1D  # noqa: E402,F401
from lesion_lightning.layers.light_unet import LightUNet, light_unet_init_  # noqa: E402,F401
from lesion_lightning.layers.mbconv import MBConvStage, mbconv  # noqa: E402,F401
from lesion_lightning.layers.odconv import ODConv2d, OmniAttention  # noqa: E402,F401
from lesion_lightning.layers.pconv import PConv  # noqa: E402,F401
from lesion_lightning.layers.sc_bridge import ChannelAttentionBridge, SCAttentionBridge, SpatialAttentionBridge  # noqa: E402,F401
from lesion_lightning.layers.scconv import CRU, SRU, FlatGroupNorm, SCConv  # noqa: E402,F401
from lesion_lightning.layers.malunet_blocks import DepthwiseGNConv, DilatedGatedAttention, ExternalAttention, GatedAttentionUnit  # noqa: E402,F401
from lesion_lightning.layers.egeunet_blocks import GroupAggregationBridge, HadamardAxisAttention  # noqa: E402,F401
from lesion_lightning.layers.scse import SCSEModule, scse  # noqa: E402,F401
from lesion_lightning.layers.transformer import FeatureMapTransformer, LocalGlobalFusion, sincos_pos_embed_2d  # noqa: E402,F401
