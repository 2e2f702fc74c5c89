"""The proving ground: a synthetic talking-character world with exact readers (metrics). See docs/proving-ground.md.

- `world`: identities, scenes, actions, objects, the caption grammar (`parse_caption`), clip specs
- `speech`: syllable audio with a loudness envelope and vowel formants
- `render`: the vectorised rasteriser (clips, reference images, face masks, pose tracks)
- `synth`: the dataset writer behind `humo synth`
- `readers`: analytic readers of faces, identity attributes, scene/action/object, mouth opening, audio envelope,
  pose
- `metrics`: text following, subject consistency, audio-visual sync, face IoU, pose error; `evaluate_clip`,
  `evaluate_batch`
"""

from humo.proving_ground.metrics import evaluate_batch, evaluate_clip, face_iou
from humo.proving_ground.world import parse_caption

__all__ = ["evaluate_batch", "evaluate_clip", "face_iou", "parse_caption"]
