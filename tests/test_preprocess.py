"""The reading path on small hand-made pictures: each step does what it says."""

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from digitlab.preprocess import (
    BlankImage,
    ReadConfig,
    area_resize,
    find_ink,
    prepare_digit,
    prepare_number,
    to_gray,
    to_mnist,
)


def drawing(shapes, size=(160, 120), width=10, ink=0.0, paper=1.0) -> np.ndarray:
    """Float (h, w) picture with the given polylines and ellipses drawn in ink."""
    im = Image.new("F", size, paper)
    draw = ImageDraw.Draw(im)
    for kind, pts in shapes:
        if kind == "line":
            draw.line(pts, fill=ink, width=width, joint="curve")
        else:
            draw.ellipse(pts, outline=ink, width=width)
    return np.asarray(im, np.float32)


SEVEN = [("line", [(50, 20), (110, 20), (70, 100)])]
ZERO = [("ellipse", (55, 15, 105, 105))]
ONE = [("line", [(80, 15), (80, 105)])]


def test_gray_picks_the_channel_where_ink_shows():
    red_on_white = np.ones((40, 40, 3), np.float32)
    red_on_white[10:30, 18:22] = (0.9, 0.1, 0.1)
    gray = to_gray(red_on_white)
    np.testing.assert_array_equal(gray, red_on_white[..., 1])  # green: ink dark, paper light
    ink_on_yellow = np.ones((40, 40, 3), np.float32) * (1.0, 0.9, 0.3)
    ink_on_yellow[10:30, 18:22] = (0.1, 0.1, 0.1)
    assert to_gray(ink_on_yellow)[0, 0] > 0.8, "not the blue channel, where paper is dark"


def test_output_is_mnist_shaped():
    out = prepare_digit(drawing(SEVEN)).image
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.max() == 1.0 and out.min() == 0.0
    ys, xs = np.nonzero(out > 0.05)
    assert max(np.ptp(ys), np.ptp(xs)) + 1 in (19, 20, 21), "longer side fills the 20 px box"
    cy, cx = ndimage.center_of_mass(out)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1, "centre of mass in the middle"
    assert out[0].max() == 0 and out[:, 0].max() == 0, "MNIST's 4 px border stays dark"


def test_polarity_does_not_matter():
    dark_on_light = prepare_digit(drawing(SEVEN)).image
    light_on_dark = prepare_digit(drawing(SEVEN, ink=1.0, paper=0.0)).image
    assert np.abs(dark_on_light - light_on_dark).max() < 0.05


def test_aspect_ratio_is_kept():
    out = prepare_digit(drawing(ONE)).image
    ys, xs = np.nonzero(out > 0.3)
    assert np.ptp(ys) >= 18 and np.ptp(xs) <= 6, "a 1 stays thin, not stretched into a square"


def test_uneven_light_and_specks_change_little():
    clean = drawing(ZERO)
    yy, xx = np.mgrid[0:120, 0:160]
    lit = clean * (1.0 - 0.45 * xx / 160)  # light falling off to the right
    lit[5:8, 5:8] = 0.0  # a speck of dust
    lit[110:113, 150:153] = 0.0
    a, b = prepare_digit(clean).image, prepare_digit(lit).image
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95


def test_a_shadow_cast_across_the_page_is_not_read_as_ink():
    # a hard-edged shadow over the left of the page (a phone's, say): its edge, and the sharp
    # corners it makes with the picture's border, were read as the strokes of a "1"
    picture = drawing([("line", [(330, 150), (380, 150), (345, 220)])], size=(600, 400),
                      width=8) * 0.9
    yy, xx = np.mgrid[0:400, 0:600]
    picture[xx < 200 + 0.3 * yy] *= 0.5  # the shadow's edge leans, 70 px left of the 7
    x0, y0, x1, y1 = prepare_digit(picture).box
    assert 320 <= x0 <= 335 and 140 <= y0 <= 155 and 375 <= x1 <= 390 and 215 <= y1 <= 230


def test_a_shadow_narrowing_to_the_border_is_not_read_as_ink():
    # the shadow's edge meets the picture's bottom border at a sharp angle: its narrow end,
    # thinner than strokes are wide near the corner, was taken for the page's largest ink
    picture = drawing([("line", [(330, 150), (380, 150), (345, 220)])], size=(600, 400),
                      width=8) * 0.9
    yy, xx = np.mgrid[0:400, 0:600]
    picture[xx < 250 - 0.6 * yy] *= 0.5
    x0, y0, x1, y1 = prepare_digit(picture).box
    assert 320 <= x0 <= 335 and 140 <= y0 <= 155 and 375 <= x1 <= 390 and 215 <= y1 <= 230


@pytest.mark.parametrize("seven_at", [480, 230])  # in the light, in the shadow
def test_a_shadow_over_most_of_the_page_leaves_it_light_paper(seven_at):
    # most of the page in shadow: the median grey is the shadow's, which made the lit strip
    # look like ink on dark paper
    picture = drawing([("line", [(seven_at, 150), (seven_at + 50, 150),
                                 (seven_at + 15, 220)])], size=(600, 400), width=8) * 0.9
    yy, xx = np.mgrid[0:400, 0:600]
    picture[xx < 450 - 0.3 * yy] *= 0.5
    x0, y0, x1, y1 = prepare_digit(picture).box
    assert abs(x0 - seven_at) <= 5 and 140 <= y0 <= 155 and abs(x1 - seven_at - 55) <= 5 \
        and 215 <= y1 <= 230


@pytest.mark.parametrize("corners", [0.4, 0.1])  # the corners' light, the middle's being 1
def test_a_strong_vignette_is_background_not_ink(corners):
    # the light falls off as the square of the distance from the middle: a flat opening cut
    # the top off that slope, and the dark corners were read as ink around the 7 (its box
    # the whole picture)
    picture = drawing([("line", [(70, 60), (125, 60), (90, 130)])], size=(180, 180),
                      width=8) * 0.9 + 0.1
    yy, xx = np.mgrid[0:180, 0:180]
    r2 = ((xx - 90) / 90) ** 2 + ((yy - 90) / 90) ** 2
    picture *= 1 - (1 - corners) * r2 / 2
    x0, y0, x1, y1 = prepare_digit(picture).box
    assert 60 <= x0 <= 70 and 50 <= y0 <= 60 and 125 <= x1 <= 135 and 130 <= y1 <= 140


@pytest.mark.parametrize("shadow", ["corner", "strip"])
def test_a_shadow_cut_by_the_pictures_border_is_not_ink(shadow):
    # a shadow's corner cut off by the picture (as a crop around small writing cuts it), or a
    # strip of shadow along one side: narrower than the background's opening, it stood above
    # the background as a thick piece of ink (an extra digit; the strip joined the "17" in
    # one box the height of the picture)
    one, seven = ("line", [(180, 100), (180, 165)]), ("line", [(210, 100), (255, 100),
                                                                (230, 165)])
    page = drawing([one, seven], size=(400, 250), width=7) * 0.85 + 0.1
    yy, xx = np.mgrid[0:250, 0:400]
    page[xx / 60 + (250 - yy) / 45 < 1 if shadow == "corner" else xx < 30 + 0.05 * yy] *= 0.5
    boxes = [p.single.box for p in prepare_number(page)]
    assert len(boxes) == 2 and boxes[0][0] >= 175 and boxes[1][2] <= 262, boxes


def test_marker_strokes_wider_than_the_background_opening_are_ink():
    # an "L" in strokes 110 px wide on a 300 px picture: the opening keeps their middle, but
    # they do not reach the border as a shadow would, so they stay ink (were taken for paper)
    picture = drawing([("line", [(100, 60), (100, 240), (220, 240)])], size=(300, 300),
                      width=110)
    x0, y0, x1, y1 = prepare_digit(picture).box
    assert x0 <= 60 and y1 >= 280 and x1 - x0 >= 150


def test_box_is_where_the_ink_was():
    picture = np.ones((200, 300), np.float32)
    picture[50:150, 200:215] = 0.0
    assert prepare_digit(picture).box == (200, 50, 215, 150)


@pytest.mark.parametrize("picture, reason", [
    (np.ones((50, 50), np.float32), "uniform"),
    (np.zeros((50, 50), np.float32), "uniform"),
    (np.full((50, 50), 0.5, np.float32) + np.random.default_rng(0).normal(0, 0.02, (50, 50))
     .astype(np.float32), "no ink|specks|uniform"),
])
def test_blank_images_are_refused(picture, reason):
    with pytest.raises(BlankImage, match=reason):
        prepare_digit(picture)


@pytest.mark.parametrize("x0", [670, 700])
def test_small_writing_in_a_shadow_keeps_the_pages_paper(x0):
    # a 70 px "7" on a 3000x2000 page, in the shadow just past its edge, which covers most of
    # the page: the crop it is read from is mostly shadow with a sliver of lit paper, and
    # taken alone looked like light ink on dark paper
    picture = drawing([("line", [(x0, 1200), (x0 + 50, 1200), (x0 + 15, 1270)])],
                      size=(3000, 2000), width=7)
    picture = picture * 0.85 + 0.1 + np.random.default_rng(0).normal(0, 0.02, picture.shape)
    yy, xx = np.mgrid[0:2000, 0:3000]
    picture[xx > 1000 - 0.3 * yy] *= 0.5
    x_0, y_0, x_1, y_1 = prepare_digit(picture.astype(np.float32)).box
    assert abs(x_0 - x0) <= 3 and abs(y_0 - 1197) <= 3 and abs(x_1 - x0 - 54) <= 3 \
        and abs(y_1 - 1272) <= 3


@pytest.mark.parametrize("lit", [0.05, 0.1])
def test_a_page_in_shadow_but_a_sliver_is_still_light_paper(lit):
    # all of a 3000x2000 page in shadow but a sliver along the top: the median grey is the
    # shadow's, darker than halfway, and the lit part too narrow to count as broad paper;
    # the 7's dark strokes tell (the lit sliver was read as light ink on dark paper)
    picture = drawing([("line", [(1800, 1200), (1850, 1200), (1815, 1270)])],
                      size=(3000, 2000), width=7)
    picture = picture * 0.85 + 0.1 + np.random.default_rng(0).normal(0, 0.02, picture.shape)
    yy, xx = np.mgrid[0:2000, 0:3000]
    picture[yy > lit * 2000 + 0.1 * xx] *= 0.4
    x0, y0, x1, y1 = prepare_digit(picture.astype(np.float32)).box
    assert abs(x0 - 1800) <= 3 and abs(y0 - 1197) <= 3 and abs(x1 - 1854) <= 3 \
        and abs(y1 - 1272) <= 3


def test_small_writing_on_a_large_image_is_found_and_read_at_full_size():
    # a 70 px "7" with 7 px strokes on a 3000x2000 page: under 1 px wide at the 400 px working
    # size, where averaging fades it into the paper (this was refused as blank)
    picture = drawing([("line", [(1800, 1200), (1850, 1200), (1815, 1270)])],
                      size=(3000, 2000), width=7)
    picture = picture * 0.85 + 0.1 + np.random.default_rng(0).normal(0, 0.02, picture.shape)
    seven = prepare_digit(picture)
    x0, y0, x1, y1 = seven.box
    assert abs(x0 - 1797) <= 3 and abs(y0 - 1197) <= 3 and abs(x1 - 1854) <= 3 \
        and abs(y1 - 1273) <= 3, f"box {seven.box} in the page's pixels"
    page = drawing(SEVEN, size=(160, 120))
    assert np.corrcoef(seven.image.ravel(), prepare_digit(page).image.ravel())[0, 1] > 0.8
    number = drawing([("line", [(1500, 900), (1500, 960)]), ("ellipse", (1530, 900, 1570, 960)),
                      ("line", [(1590, 900), (1630, 900), (1605, 960)])], size=(3000, 2000),
                     width=6)
    parts = prepare_number(number)
    starts = [p.single.box[0] for p in parts]
    assert len(starts) == 3 and np.abs(np.subtract(starts, [1497, 1530, 1587])).max() <= 4, starts


def test_ruled_lines_and_underlines_are_not_digits():
    one, seven = ("line", [(100, 110), (100, 175)]), ("line", [(130, 110), (175, 110),
                                                                (150, 175)])
    ruled = [("line", [(0, y), (500, y)]) for y in range(20, 300, 40)]
    page = np.minimum(drawing(ruled, size=(500, 300), width=2, ink=0.6, paper=0.96),
                      drawing([one, seven], size=(500, 300), width=7))  # faint printed lines
    parts = prepare_number(page)
    starts = [p.single.box[0] for p in parts]
    assert len(starts) == 2 and np.abs(np.subtract(starts, [96, 130])).max() <= 4, \
        f"the 1 and the 7, no lines: {starts}"
    assert parts[0].single.box[3] - parts[0].single.box[1] > 60, "the 1 kept whole across a line"
    underlined = drawing([("ellipse", (20, 30, 80, 120)), ("ellipse", (100, 30, 160, 120)),
                          ("line", [(10, 140), (300, 140)])], size=(320, 170), width=9)
    parts = prepare_number(underlined)
    assert len(parts) == 2 and all(p.single.box[3] < 130 for p in parts)
    # an underline no longer than the number, drawn apart from it (was read with the digits
    # as one piece)
    zeros = [("ellipse", (x, 30, x + 60, 120)) for x in (20, 100, 180, 260)]
    parts = prepare_number(drawing([*zeros, ("line", [(18, 140), (322, 140)])],
                                   size=(340, 170), width=9))
    assert len(parts) == 4 and all(p.single.box[3] < 130 for p in parts)
    with pytest.raises(BlankImage, match="only straight lines"):
        prepare_digit(drawing(ruled, size=(500, 300), width=2))
    seven_alone = drawing([("line", [(10, 10), (150, 10), (60, 110)])], size=(160, 120))
    assert prepare_digit(seven_alone).box[1] <= 6, "a 7's bar is no line"


@pytest.mark.parametrize("degrees", [2.0, -3.0, 8.0, -12.0, 15.0])
def test_slanted_ruled_lines_are_taken_out(degrees):
    # a page photographed askew: no row holds a long run of any line (lines were only looked
    # for in rows, and a page at 1.5 degrees or more was read as one piece; then in rows taken
    # five together, and a page at 8 degrees was), and the lines leave the picture through
    # its top and bottom edges, where their ends can be short (read as digits)
    slope = np.tan(np.radians(degrees))
    one, seven = ("line", [(100, 110), (100, 175)]), ("line", [(130, 110), (175, 110),
                                                                (150, 175)])
    ruled = [("line", [(0, y), (500, y + 500 * slope)]) for y in range(-140, 440, 40)]
    page = np.minimum(drawing(ruled, size=(500, 300), width=2, ink=0.6, paper=0.96),
                      drawing([one, seven], size=(500, 300), width=7))
    boxes = [p.single.box for p in prepare_number(page)]
    assert len(boxes) == 2 and np.abs(np.subtract([b[0] for b in boxes], [96, 130])).max() <= 4
    assert all(b[3] - b[1] < 75 for b in boxes), boxes
    assert find_ink(page).slope == pytest.approx(slope, abs=0.01)


def test_a_digit_on_a_turned_page_is_turned_back():
    # the page's lines fall 0.2 rows per column: so does the writing on it; a bar drawn along
    # them comes out level in the 28x28 digit
    bar = np.zeros((30, 101), np.float32)
    for x in range(101):
        bar[round(5 + 0.2 * x):round(5 + 0.2 * x) + 3, x] = 1.0
    rows = np.flatnonzero(to_mnist(bar).max(axis=1) > 0.5)
    level = np.flatnonzero(to_mnist(bar, slope=0.2).max(axis=1) > 0.5)
    assert len(level) <= 3 < len(rows), (rows, level)


def test_a_line_reaches_past_the_writing_not_past_the_dashes_of_another():
    # the 1 and the 7 sit on a line; below, a faint line broken into dashes runs past that
    # line's ends: the dashes are no writing (they kept the line from counting as one)
    one, seven = ("line", [(150, 115), (150, 178)]), ("line", [(180, 115), (225, 115),
                                                                (200, 178)])
    lines = [("line", [(30, 180), (370, 180)]),
             *[("line", [(x, 260), (x + 16, 260)]) for x in range(2, 392, 22)]]
    page = np.minimum(drawing(lines, size=(400, 300), width=2, ink=0.2, paper=0.96),
                      drawing([one, seven], size=(400, 300), width=7))
    boxes = [p.single.box for p in prepare_number(page)]
    assert len(boxes) == 2 and boxes[0][0] >= 145 and boxes[1][2] <= 232, boxes


def test_the_dashes_of_a_broken_line_are_not_digits():
    # a faint printed line above the 1 and the 7 that came out as dashes, each longer than a
    # digit is tall and a sixth as thick: no line long enough to take out, and read as digits
    one, seven = ("line", [(150, 115), (150, 178)]), ("line", [(180, 115), (225, 115),
                                                                (200, 178)])
    dashes = [("line", [(x, 60), (x + 75, 60)]) for x in (10, 110, 210, 310)]
    page = np.minimum(drawing(dashes, size=(400, 300), width=3, ink=0.2, paper=0.96),
                      drawing([one, seven], size=(400, 300), width=7))
    boxes = [p.single.box for p in prepare_number(page)]
    assert len(boxes) == 2 and all(b[1] >= 110 for b in boxes), boxes
    # a 7 whose bar, longer than the 7 is tall, was drawn apart from its stem keeps its bar
    seven = drawing([("line", [(20, 20), (125, 20)]), ("line", [(118, 30), (70, 110)])],
                    size=(150, 130), width=9)
    assert prepare_digit(seven).box[:2] == (20, 16)


def test_a_stroke_lying_along_a_ruled_line_stays_ink():
    # a 6 whose loop sits on a printed line: the stroke's rows above the line joined the
    # line's run and went with it (the loop opened: 8146 read 8141); only the line goes now
    six = ("line", [(224, 105), (206, 150), (206, 177), (240, 177), (240, 150), (206, 150)])
    ruled = [("line", [(0, y), (400, y)]) for y in range(20, 300, 40)]  # one at y = 180
    page = np.minimum(drawing(ruled, size=(400, 300), width=2, ink=0.6, paper=0.96),
                      drawing([six], size=(400, 300), width=7))
    ink = find_ink(page)
    assert ink.scale == 1.0
    assert ink.mask[174:179, 206:241].mean() > 0.95, "the loop's bottom stroke"
    assert not ink.mask[179:182, 250:].any() and not ink.mask[179:182, :200].any(), "the line"


def test_a_solid_dot_is_no_digit():
    im = Image.new("F", (200, 160), 1.0)
    ImageDraw.Draw(im).ellipse((80, 60, 120, 100), fill=0.0)
    with pytest.raises(BlankImage, match="dot"):
        prepare_digit(np.asarray(im, np.float32))
    im = Image.new("F", (160, 130), 1.0)
    draw = ImageDraw.Draw(im)
    draw.ellipse((20, 20, 80, 110), outline=0.0, width=10)  # a 0 and a decimal point
    draw.ellipse((100, 95, 114, 109), fill=0.0)
    assert len(prepare_number(np.asarray(im, np.float32))) == 1, "a point is not a digit"


def test_a_large_blank_page_stays_blank():
    page = np.full((1500, 2000), 0.8, np.float32)
    page += np.random.default_rng(1).normal(0, 0.02, page.shape).astype(np.float32)
    page *= np.linspace(0.6, 1.0, 2000, dtype=np.float32)  # light falling off
    with pytest.raises(BlankImage):
        prepare_digit(page)


def test_thin_and_thick_strokes_come_out_alike():
    thin = prepare_digit(drawing(SEVEN, size=(640, 480), width=3)).image
    thick = prepare_digit(drawing(SEVEN, width=22)).image
    normal = prepare_digit(drawing(SEVEN)).image
    ink = [float((x > 0.5).sum()) for x in (thin, normal, thick)]
    assert max(ink) / min(ink) < 2.0, f"stroke areas {ink}"


def test_number_left_to_right_with_boxes():
    picture = drawing([("line", [(20, 20), (20, 100)]),
                       ("ellipse", (60, 20, 110, 100)),
                       ("line", [(130, 20), (190, 20), (150, 100)])], size=(220, 120))
    parts = prepare_number(picture)
    assert len(parts) == 3
    xs = [p.single.box[0] for p in parts]
    assert xs == sorted(xs) and not parts[0].segments, "a 1 is never cut"


def test_a_number_given_as_one_digit_is_marked():
    number = drawing([("line", [(20, 20), (20, 100)]), ("ellipse", (60, 20, 110, 100)),
                      ("line", [(130, 20), (190, 20), (150, 100)])], size=(220, 120))
    assert prepare_digit(number).several
    assert not prepare_digit(drawing(SEVEN)).several
    assert not prepare_digit(drawing(ZERO)).several
    five = [("line", [(40, 20), (90, 20)]), ("line", [(40, 30), (40, 55), (80, 55), (90, 80),
                                                     (70, 100), (35, 95)])]
    assert not prepare_digit(drawing(five, size=(140, 120))).several, "a 5 with its bar apart"


def test_broken_stroke_stays_with_its_digit():
    # a 5 whose top bar does not touch its body: two pieces, one digit
    five = [("line", [(40, 20), (90, 20)]), ("line", [(40, 30), (40, 55), (80, 55), (90, 80),
                                                     (70, 100), (35, 95)])]
    parts = prepare_number(drawing(five, size=(140, 120)))
    assert len(parts) == 1


def _paths(part) -> list[list[tuple[int, int]]]:
    """Every way through a part's lattice of cuts, as lists of segment keys."""
    def walk(i):
        if i == part.ends:
            return [[]]
        return [[(a, b), *rest] for (a, b) in part.segments if a == i for rest in walk(b)]
    return walk(0)


def test_touching_digits_are_cut_apart():
    # two 0s whose outlines meet (2 px of overlap; sharing a long stretch of stroke, they
    # have less ink through their middles than where they meet, and are not cut there)
    picture = drawing([("ellipse", (20, 20, 80, 100)), ("ellipse", (78, 20, 138, 100))],
                      size=(160, 120))
    assert len(find_ink(picture).boxes) == 1, "one connected piece"
    [part] = prepare_number(picture)
    assert not part.must_split, "the model decides: one digit or two"
    two = [p for p in _paths(part) if len(p) == 2]
    assert any(abs(part.segments[p[0]].box[2] - 79) < 4 for p in two), "one cut where they meet"
    wide = drawing([("ellipse", (10, 30, 52, 90)), ("ellipse", (48, 30, 90, 90)),
                    ("ellipse", (86, 30, 128, 90))], size=(150, 120), width=6)
    [part] = prepare_number(wide)
    assert part.must_split and any(len(p) == 3 for p in _paths(part))


def test_a_cut_follows_the_gap_between_slanting_digits():
    # two strokes slanting the same way, touching at the bottom: no straight cut parts them
    slant = drawing([("line", [(70, 20), (30, 100)]), ("line", [(110, 20), (70, 100)]),
                     ("line", [(30, 100), (70, 100)])], size=(140, 120))
    [part] = prepare_number(slant)
    halves = [[part.segments[k].image for k in p] for p in _paths(part) if len(p) == 2]
    assert halves, "cut in two somewhere"
    # each half is one whole stroke: ink from top to bottom of its 28x28, none of the other
    assert any(all((h > 0.5).any(axis=1).sum() > 15 for h in pair) for pair in halves)


def test_same_input_same_output():
    a, b = prepare_digit(drawing(ZERO)).image, prepare_digit(drawing(ZERO)).image
    assert np.array_equal(a, b)


def test_area_resize():
    assert np.allclose(area_resize(np.full((28, 28), 0.5), 20), 0.5)
    block = np.zeros((28, 28))
    block[:7, :7] = 1
    small = area_resize(block, 20)
    assert np.allclose(small[:5, :5], 1) and np.allclose(small[5:], 0)


def test_config_is_used():
    picture = drawing(SEVEN)
    with pytest.raises(BlankImage):
        prepare_digit(picture * 0.1 + 0.9, ReadConfig(min_contrast=0.5))
