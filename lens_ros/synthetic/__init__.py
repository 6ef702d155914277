"""Procedural referring scenes: RGB, depth, camera_info, instance masks and referring
expressions at four difficulty levels, deterministic by seed.

  make_scene(rng, level, config) -> Scene        one tabletop scene and its commands
  make_sequence(rng, n_frames, config) -> Sequence  a moving target, per-frame ground truth
  SPLITS, scene_seed, make_split_scene           train/val/test as disjoint seed ranges
  SyntheticReferDataset                          TrainItems for lens_ros.training
  VOCABULARY, LEVELS                             the closed word list and the levels

Writers (imported from their modules, they pull in pycocotools/rosbags):
``lens_ros.synthetic.refcoco.export_refcoco`` and ``lens_ros.synthetic.bag.write_scene_bag`` /
``write_sequence_bag``; CLI ``python -m lens_ros.synthetic``.
"""
from lens_ros.synthetic.expressions import LEVELS
from lens_ros.synthetic.scene import Expression, Scene, SceneConfig, SceneObject, make_scene
from lens_ros.synthetic.sequence import Sequence, make_sequence
from lens_ros.synthetic.splits import SPLITS, make_split_scene, scene_seed
from lens_ros.synthetic.vocabulary import LIST_COMMAND, VOCABULARY

__all__ = ["LEVELS", "LIST_COMMAND", "SPLITS", "VOCABULARY", "Expression", "Scene",
           "SceneConfig", "SceneObject", "Sequence", "make_scene", "make_sequence",
           "make_split_scene", "scene_seed"]
