"""The evaluation harness, apart from the synthetic world it measures (`humo.proving_ground`).

- `heldout`: a model's quality on held-out identities against the baselines and bars (`humo eval --model`)
- `ablation`: HuMo's ablations and guidance claims rerun in the proving ground (`humo ablate`)
- `probes`: capability probes (audio features -> mouth, held-out curves and conditioning gaps over a run's checkpoints)
- `codec`: how well a latent codec keeps what the readers measure (PSNR, face PSNR, mouth agreement)
"""
