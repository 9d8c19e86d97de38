"""SRN-DeblurNet (Tao et al., CVPR 2018) as a PyTorch/Lightning research framework."""

from srn_deblur.network import EncoderDecoder, SRNDeblurNet

__all__ = ["EncoderDecoder", "SRNDeblurNet"]
