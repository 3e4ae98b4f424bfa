"""The features every segmentation builder here writes, and one checked example.

`image`: the source file's bytes, stored unchanged (JPEG for VOC/COCO, PNG for Cityscapes,
either for one's own data) so reading back gives exactly the pixels the user's file decodes
to, and the training pipeline can decode only the window a crop needs. A set of one format
records it as the feature's `encoding_format`; a set of JPEG and PNG images records none
(TFDS's Image feature then stores the bytes given and decodes either), and the input
pipeline picks each image's decoder from its first bytes. `label`: uint8 HxWx1 class ids, 255 =
ignore, PNG. `file_name`: the source name. `classes`: the class ids present, so the
bootstrapping of paper 4.3 can pick hard-class images without decoding labels.
"""
import tensorflow_datasets as tfds

from deeplab_tf.data import validation


def segmentation_features(class_names, image_format):
    """`image_format`: "jpeg", "png", or None for a mix of both (each image as it is)."""
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format=image_format),
        "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
        "file_name": tfds.features.Text(),
        "classes": tfds.features.Sequence(tfds.features.ClassLabel(names=class_names)),
    })


def checked_example(image_path, label, label_path, file_name, num_classes, image_format):
    """A feature dict after every check in `validation` has passed; `image_format` is the
    one the image file must decode as ("jpeg" or "png")."""
    image_bytes, image_size = validation.read_image(image_path, image_format.upper())
    classes = validation.check_label(label, num_classes, label_path, image_path, image_size)
    return {"image": image_bytes, "label": label[..., None], "file_name": file_name,
            "classes": classes}
