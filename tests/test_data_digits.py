import numpy as np
import pytest
from sklearn.datasets import load_digits

from geoalign.data.digits import (DIGITS_MODULUS, digits_images, half_polynomials_to_images,
                                  images_to_half_polynomials, load_digits_two_view)


def test_default_split_sizes_and_disjoint_classes():
    d = load_digits_two_view()
    target = load_digits().target
    assert d.seen_classes.tolist() == list(range(7))
    assert d.unseen_classes.tolist() == [7, 8, 9]
    assert d.X_a_train.shape == (int(np.isin(target, range(7)).sum()), 32)
    assert d.X_b_train.shape == d.X_a_train.shape
    assert d.X_a_test.shape == (int(np.isin(target, [7, 8, 9]).sum()), 32)
    assert d.X_a_val.shape == (0, 32) and d.y_val.shape == (0,)
    assert set(d.y_train) == set(range(7)) and set(d.y_test) == {7, 8, 9}
    assert not set(d.train_index) & set(d.test_index)
    assert len(d.train_index) + len(d.test_index) == len(target)


def test_views_are_left_and_right_halves():
    d = load_digits_two_view(scale="unit")
    images = load_digits().images
    i = d.train_index[5]
    np.testing.assert_allclose(d.X_a_train[5], images[i][:, :4].ravel() / 16)
    np.testing.assert_allclose(d.X_b_train[5], images[i][:, 4:].ravel() / 16)


def test_validation_split_is_stratified_and_disjoint():
    d = load_digits_two_view(seen_classes=[0, 2, 4], unseen_classes=[1, 3], val_fraction=0.25, seed=3)
    assert set(d.y_val) == {0, 2, 4} and set(d.y_train) == {0, 2, 4} and set(d.y_test) == {1, 3}
    assert not set(d.train_index) & set(d.val_index)
    for c in (0, 2, 4):
        n_c = (load_digits().target == c).sum()
        assert (d.y_val == c).sum() == round(0.25 * n_c)
    again = load_digits_two_view(seen_classes=[0, 2, 4], unseen_classes=[1, 3], val_fraction=0.25, seed=3)
    np.testing.assert_array_equal(d.val_index, again.val_index)


@pytest.mark.parametrize("kwargs, match", [
    (dict(seen_classes=[0, 1], unseen_classes=[1, 2]), "overlap"),
    (dict(seen_classes=range(10)), "unseen_classes is empty"),
    (dict(seen_classes=[0, 11]), "digits 0..9"),
    (dict(seen_classes=[1, 1]), "duplicates"),
    (dict(val_fraction=1.0), "val_fraction"),
    (dict(scale="zscore"), "scale"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_digits_two_view(**kwargs)


def test_z17_polynomials_in_range_and_round_trip():
    images, labels = digits_images()
    left, right = images_to_half_polynomials(images)
    assert left.shape == right.shape == (len(images), 32)
    assert left.dtype == right.dtype == np.int64
    assert left.min() >= 0 and left.max() < DIGITS_MODULUS and right.max() < DIGITS_MODULUS
    np.testing.assert_array_equal(half_polynomials_to_images(left, right), images)
    # row-major: coefficient 4r + c of the right half is pixel (r, 4 + c)
    assert left[7, 4 * 3 + 2] == images[7, 3, 2] and right[7, 4 * 5 + 1] == images[7, 5, 5]


def test_split_polynomials_match_features():
    d = load_digits_two_view(val_fraction=0.1)
    for split, (xa, xb) in {"train": (d.X_a_train, d.X_b_train), "val": (d.X_a_val, d.X_b_val),
                            "test": (d.X_a_test, d.X_b_test)}.items():
        left, right = d.polynomials(split)
        np.testing.assert_array_equal(left, xa.astype(np.int64))
        np.testing.assert_array_equal(right, xb.astype(np.int64))
    with pytest.raises(ValueError, match="split"):
        d.polynomials("unseen")


def test_polynomial_input_errors():
    with pytest.raises(ValueError, match=r"\[0, 17\)"):
        images_to_half_polynomials(np.full((1, 8, 8), 17))
    with pytest.raises(ValueError, match="integer"):
        images_to_half_polynomials(np.full((1, 8, 8), 0.5))
    with pytest.raises(ValueError, match="shape"):
        images_to_half_polynomials(np.zeros((1, 8, 7), dtype=int))
    with pytest.raises(ValueError, match="same number of rows"):
        half_polynomials_to_images(np.zeros((2, 32), int), np.zeros((3, 32), int))


# ---------------------------------------------------------------- augmentation
def test_augment_images_identity_and_known_transforms():
    from geoalign.data.digits import augment_images

    images, _ = digits_images()
    im = images[:5]
    same = augment_images(im, n_copies=2, max_shift=0, max_rotation=0, random_state=0)
    assert same.shape == (15, 8, 8)
    np.testing.assert_allclose(same, np.tile(im, (3, 1, 1)), atol=1e-12)
    # a 90-degree rotation range can only give rotated digits: check one whole-image rotation
    one = np.zeros((1, 8, 8))
    one[0, 1, 3] = 16.0  # pixel above the centre (3.5, 3.5) ...
    rot = augment_images(one, n_copies=200, max_shift=0, max_rotation=180, random_state=1)[1:]
    mass = rot.sum(axis=(1, 2))
    assert np.all(rot >= 0) and np.all(rot <= 16) and np.all(mass > 0)
    # ... whose centre of mass stays at radius ~2.5 from the centre under any rotation
    rr, cc = np.mgrid[:8, :8]
    r = [np.hypot((x * rr).sum() / x.sum() - 3.5, (x * cc).sum() / x.sum() - 3.5) for x in rot]
    assert np.allclose(r, 2.55, atol=0.35)
    shifted = augment_images(images[:50], n_copies=1, max_shift=1.0, max_rotation=0, random_state=2)[50:]
    assert not np.allclose(shifted, images[:50])
    assert np.abs(shifted.sum(axis=(1, 2)) - images[:50].sum(axis=(1, 2))).max() > 0


def test_augmented_halves_stay_pairs_and_splices_have_no_label():
    from geoalign.data.digits import augmented_digits_halves, image_halves, splice_images

    images, labels = digits_images()
    im, lab = images[:40], labels[:40]
    left, right, y = augmented_digits_halves(im, lab, n_copies=2, n_splices=3, random_state=0)
    n = 40 * 4 * 3
    assert left.shape == right.shape == (n, 32) and y.shape == (n,)
    # the halves of every row re-assemble into one augmented image (pairs stay pairs): the first
    # block is the untouched originals, and splices take their rows from real images
    whole = np.concatenate([left.reshape(n, 8, 4), right.reshape(n, 8, 4)], axis=2)
    np.testing.assert_array_equal(whole[:40], im)
    assert np.array_equal(y[:40], lab)
    sp, partner = splice_images(im, n_copies=3, random_state=0)
    top_src = np.tile(np.arange(40), 4)
    for k in range(40, 160):
        cut = np.flatnonzero(np.any(sp[k] != im[top_src[k]], axis=1))
        if cut.size:  # rows from the cut on come from the partner
            assert 3 <= cut[0] <= 5
            np.testing.assert_array_equal(sp[k][cut[0]:], im[partner[k]][cut[0]:])
    same_class = lab[top_src] == lab[partner]
    left2, right2, y2 = augmented_digits_halves(im, lab, n_copies=0, n_splices=3, random_state=0)
    assert np.array_equal(y2 == -1, ~same_class) and np.array_equal(y2[same_class], lab[top_src][same_class])
    # deterministic given the seed
    again = augmented_digits_halves(im, lab, n_copies=2, n_splices=3, random_state=0)
    assert np.array_equal(again[0], left)
    np.testing.assert_array_equal(image_halves(im)[0], images_to_half_polynomials(im)[0])


@pytest.mark.parametrize("call, match", [
    (lambda f: f["augment_images"](np.zeros((2, 8, 8)), max_scale=1.0), "max_scale"),
    (lambda f: f["augment_images"](np.zeros((2, 8, 8)), max_rotation=-1), "max_rotation"),
    (lambda f: f["augment_images"](np.zeros((2, 8, 8)), n_copies=0, include_original=False), "no images"),
    (lambda f: f["splice_images"](np.zeros((2, 8, 8)), cut_rows=(5, 3)), "low <= high"),
    (lambda f: f["splice_images"](np.zeros((2, 8, 8)), cut_rows=(0, 3)), "cut_rows"),
    (lambda f: f["augmented_digits_halves"](np.zeros((2, 8, 8)), [1]), "labels must have shape"),
])
def test_augmentation_bad_arguments(call, match):
    import geoalign.data.digits as dg

    with pytest.raises(ValueError, match=match):
        call(vars(dg))
