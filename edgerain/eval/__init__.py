"""Metrics (Y-channel PSNR/SSIM as in the deraining literature, RGB PSNR) and paired-folder evaluation."""
