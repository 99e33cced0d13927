//! The data pipeline on tiny datasets written to temporary directories (no GPU, no
//! external data).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::Tmp;
use wgseg::data::{
    self, cityscapes, colorize, load_image, normalize, overlay, save_png_gray, save_png_rgb,
    Augment, ClassStats, Dataset, DatasetInfo, Groups, Loader, LoaderState, Sample,
};
use wgseg::Error;

type R = Result<(), Box<dyn std::error::Error>>;

const TOML: &str = r#"
name = "tiny"
ignore_index = 255
[[classes]]
name = "a"
color = [255, 0, 0]
[[classes]]
name = "b"
color = [0, 255, 0]
[[classes]]
name = "c"
color = [0, 0, 255]
"#;

fn image_bytes(h: usize, w: usize, salt: u8) -> Vec<u8> {
    (0..h * w * 3)
        .map(|i| (i * 7 + salt as usize * 31) as u8)
        .collect()
}

fn label_bytes(h: usize, w: usize, salt: usize) -> Vec<u8> {
    (0..h * w)
        .map(|i| {
            if (i + salt) % 11 == 0 {
                255
            } else {
                ((i + salt) % 3) as u8
            }
        })
        .collect()
}

fn write_pair(root: &Path, split: &str, stem: &str, h: usize, w: usize, salt: u8) -> R {
    let (id, ld) = (
        root.join(split).join("images"),
        root.join(split).join("labels"),
    );
    std::fs::create_dir_all(&id)?;
    std::fs::create_dir_all(&ld)?;
    save_png_rgb(
        &id.join(format!("{stem}.png")),
        w,
        h,
        &image_bytes(h, w, salt),
    )?;
    save_png_gray(
        &ld.join(format!("{stem}.png")),
        w,
        h,
        &label_bytes(h, w, salt as usize),
    )?;
    Ok(())
}

/// A valid dataset: train with 3 samples (6×10), val with 2.
fn make_dataset(root: &Path) -> R {
    std::fs::write(root.join("dataset.toml"), TOML)?;
    for (k, stem) in ["b_img", "a_img", "c_img"].iter().enumerate() {
        write_pair(root, "train", stem, 6, 10, k as u8)?;
    }
    for (k, stem) in ["v1", "v0"].iter().enumerate() {
        write_pair(root, "val", stem, 6, 10, 10 + k as u8)?;
    }
    Ok(())
}

fn err_text<T>(r: wgseg::Result<T>) -> String {
    match r {
        Ok(_) => "no error".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn folder_round_trip_two_splits() -> R {
    let t = Tmp::new("roundtrip");
    make_dataset(&t.0)?;
    let train = data::open(Some(&t.0), "train", 1.0, 0)?;
    assert_eq!(train.len(), 3);
    assert_eq!(train.info().num_classes(), 3);
    assert_eq!(train.info().classes[1].color, [0, 255, 0]);
    let names: Vec<String> = (0..3).map(|i| train.name(i)).collect();
    assert_eq!(names, ["a_img", "b_img", "c_img"], "sorted by stem");
    let s = train.load(0)?;
    assert_eq!((s.height, s.width), (6, 10));
    assert_eq!(s.image, image_bytes(6, 10, 1));
    assert_eq!(s.label, label_bytes(6, 10, 1));
    let val = data::open(Some(&t.0), "val", 1.0, 0)?;
    assert_eq!((val.len(), val.name(0)), (2, "v0".to_string()));
    data::validate(train.as_ref(), |_, _| {})?;
    let mut seen = Vec::new();
    data::validate(val.as_ref(), |d, n| seen.push((d, n)))?;
    assert_eq!(seen, [(1, 2), (2, 2)]);
    Ok(())
}

#[test]
fn scale_rounds_sizes() -> R {
    let t = Tmp::new("scale");
    std::fs::write(t.0.join("dataset.toml"), TOML)?;
    write_pair(&t.0, "train", "x", 6, 10, 0)?;
    write_pair(&t.0, "train", "y", 5, 7, 0)?;
    let ds = data::open(Some(&t.0), "train", 0.5, 0)?;
    let (a, b) = (ds.load(0)?, ds.load(1)?);
    assert_eq!((a.height, a.width), (3, 5));
    // round(2.5) = 3, round(3.5) = 4 (halves away from zero).
    assert_eq!((b.height, b.width), (3, 4));
    assert_eq!((a.image.len(), a.label.len()), (45, 15));
    // Nearest for labels: destination (0, 0) samples source (floor(0.5·2), floor(0.5·2)) = (1, 1).
    assert_eq!(a.label[0], label_bytes(6, 10, 0)[10 + 1]);
    // Bilinear at 0.5 is the 2×2 average.
    let src = image_bytes(6, 10, 0);
    let avg = [0, 3, 30, 33].iter().map(|&o| src[o] as f32).sum::<f32>() / 4.0;
    assert_eq!(a.image[0], avg.round() as u8);
    Ok(())
}

#[test]
fn bad_inputs_name_the_file() -> R {
    // Missing label → names the image.
    let t = Tmp::new("bad-missing");
    make_dataset(&t.0)?;
    std::fs::remove_file(t.0.join("train/labels/b_img.png"))?;
    let e = err_text(data::open(Some(&t.0), "train", 1.0, 0));
    assert!(
        e.contains("b_img.png") && e.contains("without a label"),
        "{e}"
    );

    // Label without an image → names the label.
    let t = Tmp::new("bad-orphan");
    make_dataset(&t.0)?;
    std::fs::remove_file(t.0.join("train/images/c_img.png"))?;
    let e = err_text(data::open(Some(&t.0), "train", 1.0, 0));
    assert!(
        e.contains("labels/c_img.png") && e.contains("without an image"),
        "{e}"
    );

    // Corrupt image, label of another size, id out of range, RGB label: found by validate.
    let t = Tmp::new("bad-content");
    make_dataset(&t.0)?;
    let train = t.0.join("train");
    std::fs::write(
        train.join("images/a_img.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )?;
    save_png_gray(&train.join("labels/b_img.png"), 9, 6, &[0; 54])?;
    let mut ids = label_bytes(6, 10, 2);
    ids[13] = 3;
    save_png_gray(&train.join("labels/c_img.png"), 10, 6, &ids)?;
    let ds = data::open(Some(&t.0), "train", 1.0, 0)?;
    let e = err_text(ds.load(0));
    assert!(
        e.contains("images/a_img.png") && e.contains("decode"),
        "{e}"
    );
    let e = err_text(ds.load(1));
    assert!(e.contains("labels/b_img.png") && e.contains("6×9"), "{e}");
    let e = err_text(ds.load(2));
    assert!(
        e.contains("labels/c_img.png") && e.contains("class id 3"),
        "{e}"
    );
    assert!(e.contains("(y 1, x 3)"), "{e}");
    // validate reports the first problem and lists the others.
    let e = err_text(data::validate(ds.as_ref(), |_, _| {}));
    assert!(
        e.contains("a_img.png") && e.contains("b_img.png") && e.contains("c_img.png"),
        "{e}"
    );

    save_png_rgb(
        &train.join("labels/c_img.png"),
        10,
        6,
        &image_bytes(6, 10, 0),
    )?;
    let e = err_text(data::open(Some(&t.0), "train", 1.0, 0)?.load(2));
    assert!(e.contains("labels/c_img.png") && e.contains("RGB"), "{e}");

    // Missing and empty splits.
    let e = err_text(data::open(Some(&t.0), "test", 1.0, 0));
    assert!(e.contains("test") && e.contains("not found"), "{e}");
    std::fs::create_dir_all(t.0.join("empty/images"))?;
    std::fs::create_dir_all(t.0.join("empty/labels"))?;
    let e = err_text(data::open(Some(&t.0), "empty", 1.0, 0));
    assert!(e.contains("empty/images") && e.contains("is empty"), "{e}");
    Ok(())
}

#[test]
fn dataset_toml_errors_name_key_and_file() -> R {
    let t = Tmp::new("toml");
    make_dataset(&t.0)?;
    let p = t.0.join("dataset.toml");
    std::fs::write(&p, TOML.replace("ignore_index", "ignore_idx"))?;
    let e = err_text(data::open(Some(&t.0), "train", 1.0, 0));
    assert!(
        e.contains("dataset.toml") && e.contains("ignore_idx"),
        "{e}"
    );
    std::fs::write(
        &p,
        TOML.replace("color = [0, 0, 255]", "colour = [0, 0, 255]"),
    )?;
    let e = err_text(data::open(Some(&t.0), "train", 1.0, 0));
    assert!(e.contains("dataset.toml") && e.contains("colour"), "{e}");
    std::fs::write(&p, format!("tail = [7]\n{TOML}"))?;
    let e = err_text(data::open(Some(&t.0), "train", 1.0, 0));
    assert!(e.contains("dataset.toml") && e.contains("class 7"), "{e}");
    std::fs::write(&p, TOML.replace("ignore_index = 255", "ignore_index = 1"))?;
    let e = err_text(data::open(Some(&t.0), "train", 1.0, 0));
    assert!(e.contains("ignore_index = 1"), "{e}");
    // Defaults: ignore_index 255, no groups.
    let info = DatasetInfo::parse(&TOML.replace("ignore_index = 255", ""), Path::new("x"))?;
    assert_eq!((info.ignore_index, info.tail, info.head), (255, None, None));
    Ok(())
}

/// Writes a paletted PNG whose palette colours are unrelated to the indices.
fn write_indexed(path: &Path, w: u32, h: u32, depth: png::BitDepth, rows: &[u8]) -> R {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, w, h);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(depth);
    enc.set_palette(
        (0..16u8)
            .flat_map(|i| [200 - i * 9, i * 13, 77])
            .collect::<Vec<u8>>(),
    );
    let mut wr = enc.write_header()?;
    wr.write_image_data(rows)?;
    Ok(())
}

#[test]
fn paletted_labels_decode_indices() -> R {
    let t = Tmp::new("palette");
    make_dataset(&t.0)?;
    let lab = t.0.join("train/labels/a_img.png");
    // 8-bit indices, 6×10.
    let ids8 = label_bytes(6, 10, 5)
        .iter()
        .map(|&v| v.min(2))
        .collect::<Vec<u8>>();
    write_indexed(&lab, 10, 6, png::BitDepth::Eight, &ids8)?;
    let ds = data::open(Some(&t.0), "train", 1.0, 0)?;
    assert_eq!(ds.load(0)?.label, ids8);
    // 4-bit indices: two pixels per byte, high nibble first; rows padded to whole bytes.
    let ids4: Vec<u8> = (0..60).map(|i| (i % 3) as u8).collect();
    let packed: Vec<u8> = ids4
        .chunks(10)
        .flat_map(|row| {
            row.chunks(2)
                .map(|p| (p[0] << 4) | p[1])
                .collect::<Vec<u8>>()
        })
        .collect();
    write_indexed(&lab, 10, 6, png::BitDepth::Four, &packed)?;
    assert_eq!(ds.load(0)?.label, ids4);
    Ok(())
}

#[test]
fn cityscapes_layout_maps_label_ids() -> R {
    let t = Tmp::new("cityscapes");
    for (city, stem) in [
        ("zurich", "zurich_000001_000019"),
        ("aachen", "aachen_000000_000019"),
    ] {
        let id = t.0.join("leftImg8bit/train").join(city);
        let ld = t.0.join("gtFine/train").join(city);
        std::fs::create_dir_all(&id)?;
        std::fs::create_dir_all(&ld)?;
        save_png_rgb(&id.join(format!("{stem}_leftImg8bit.png")), 4, 2, &[9; 24])?;
        // labelIds: road 7 → 0, car 26 → 13, unlabeled 0 → 255, bicycle 33 → 18,
        // rail track 10 → 255, sky 23 → 10, licence plate stays void, person 24 → 11.
        let ids = [7, 26, 0, 33, 10, 23, 1, 24];
        save_png_gray(&ld.join(format!("{stem}_gtFine_labelIds.png")), 4, 2, &ids)?;
        // Other gtFine files are ignored.
        save_png_rgb(&ld.join(format!("{stem}_gtFine_color.png")), 4, 2, &[0; 24])?;
    }
    let ds = data::open(Some(&t.0), "train", 1.0, 0)?;
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.name(0), "aachen_000000_000019");
    assert_eq!(ds.info().num_classes(), 19);
    assert_eq!(ds.info().classes[13].name, "car");
    assert_eq!(ds.load(1)?.label, [0, 13, 255, 18, 255, 10, 255, 11]);
    let map = cityscapes::label_to_train_id();
    assert_eq!(map.iter().filter(|&&v| v != 255).count(), 19);
    Ok(())
}

/// Writes `<root>/images/<stem>.jpg` (4×2) and its trimap `annotations/trimaps/<stem>.png`.
fn write_pet(root: &Path, stem: &str, trimap: &[u8; 8]) -> R {
    let (id, td) = (root.join("images"), root.join("annotations/trimaps"));
    std::fs::create_dir_all(&id)?;
    std::fs::create_dir_all(&td)?;
    let rgb = image::RgbImage::from_raw(4, 2, image_bytes(2, 4, trimap[0])).ok_or("image")?;
    rgb.save(id.join(format!("{stem}.jpg")))?;
    save_png_gray(&td.join(format!("{stem}.png")), 4, 2, trimap)?;
    Ok(())
}

#[test]
fn oxford_pet_layout_maps_trimaps_and_splits() -> R {
    let t = Tmp::new("pet");
    let stems: Vec<String> = (0..10).map(|i| format!("Abyssinian_{i}")).collect();
    for (i, stem) in stems.iter().enumerate() {
        write_pet(&t.0, stem, &[1, 2, 3, 1, 2, 3, 1, (i % 3 + 1) as u8])?;
    }
    // What the archives also hold is skipped: macOS resource forks, other files.
    save_png_gray(
        &t.0.join("annotations/trimaps/._Abyssinian_0.png"),
        1,
        1,
        &[0],
    )?;
    std::fs::write(t.0.join("images/Abyssinian_0.mat"), b"not an image")?;
    std::fs::write(
        t.0.join("annotations/list.txt"),
        b"# the official lists are unused",
    )?;
    let mut seen = Vec::new();
    for (split, n) in [("train", 8), ("val", 1), ("test", 1)] {
        let ds = data::open(Some(&t.0), split, 1.0, 0)?;
        assert_eq!(ds.len(), n, "{split}");
        assert_eq!(ds.info().num_classes(), 3);
        assert_eq!(ds.info().classes[0].name, "pet");
        for i in 0..ds.len() {
            let name = ds.name(i);
            let k: usize = name.trim_start_matches("Abyssinian_").parse()?;
            // Trimap values 1, 2, 3 are the classes 0, 1, 2.
            let s = ds.load(i)?;
            assert_eq!(s.label, [0, 1, 2, 0, 1, 2, 0, (k % 3) as u8], "{name}");
            assert_eq!((s.height, s.width, s.image.len()), (2, 4, 24));
            seen.push(name);
        }
    }
    // The three splits partition the images, the same way on every opening (any run seed).
    seen.sort();
    let mut all = stems.clone();
    all.sort();
    assert_eq!(seen, all);
    let again = data::open(Some(&t.0), "val", 1.0, 7)?;
    let first = data::open(Some(&t.0), "val", 1.0, 0)?;
    assert_eq!(again.name(0), first.name(0));
    assert!(err_text(data::open(Some(&t.0), "validation", 1.0, 0)).contains("train, val and test"));

    // A trimap value other than 1, 2, 3 is an error naming the file, the value and the pixel.
    let bad = Tmp::new("pet-bad");
    for stem in &stems {
        write_pet(&bad.0, stem, &[1, 2, 3, 1, 2, 3, 1, 2])?;
    }
    write_pet(&bad.0, "Abyssinian_3", &[1, 2, 3, 1, 4, 3, 1, 2])?;
    let e: Vec<String> = ["train", "val", "test"]
        .iter()
        .flat_map(|s| {
            let ds = data::open(Some(&bad.0), s, 1.0, 0).expect("open");
            (0..ds.len()).map(move |i| err_text(ds.load(i)))
        })
        .filter(|e| e != "no error")
        .collect();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("Abyssinian_3.png")
            && e[0].contains("label value 4")
            && e[0].contains("(y 1, x 0)"),
        "{}",
        e[0]
    );
    // An image without a trimap is an error naming it.
    std::fs::remove_file(bad.0.join("annotations/trimaps/Abyssinian_5.png"))?;
    let e = err_text(data::open(Some(&bad.0), "train", 1.0, 0));
    assert!(
        e.contains("Abyssinian_5.jpg") && e.contains("without a label"),
        "{e}"
    );
    // A folder that matches no layout names the three it looked for.
    let none = Tmp::new("pet-none");
    std::fs::create_dir_all(none.0.join("images"))?;
    let e = err_text(data::open(Some(&none.0), "train", 1.0, 0));
    assert!(e.contains("annotations/trimaps"), "{e}");
    Ok(())
}

/// Writes an ADE20K pair (4×2) under `root`: `images/<dir>/<stem>.jpg` and
/// `annotations/<dir>/<stem>.png` holding `stored`.
fn write_ade(root: &Path, dir: &str, stem: &str, stored: &[u8; 8]) -> R {
    let (id, ad) = (
        root.join("images").join(dir),
        root.join("annotations").join(dir),
    );
    std::fs::create_dir_all(&id)?;
    std::fs::create_dir_all(&ad)?;
    let rgb = image::RgbImage::from_raw(4, 2, image_bytes(2, 4, stored[1])).ok_or("image")?;
    rgb.save(id.join(format!("{stem}.jpg")))?;
    save_png_gray(&ad.join(format!("{stem}.png")), 4, 2, stored)?;
    Ok(())
}

#[test]
fn ade20k_layout_reduces_the_zero_label() -> R {
    let t = Tmp::new("ade20k");
    let ade = t.0.join("ADEChallengeData2016");
    write_ade(
        &ade,
        "training",
        "ADE_train_00000002",
        &[0, 1, 2, 150, 75, 0, 3, 1],
    )?;
    write_ade(
        &ade,
        "training",
        "ADE_train_00000001",
        &[1, 1, 0, 0, 150, 149, 2, 3],
    )?;
    write_ade(
        &ade,
        "validation",
        "ADE_val_00000001",
        &[5, 0, 0, 0, 0, 0, 0, 7],
    )?;
    // Found from the directory that holds ADEChallengeData2016/ and from it directly.
    for root in [&t.0, &ade] {
        let ds = data::open(Some(root), "train", 1.0, 0)?;
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.info().num_classes(), 150);
        assert_eq!(ds.info().classes[0].name, "wall");
        assert_eq!(ds.info().classes[149].name, "flag");
        assert_eq!(ds.info().classes[12].color, [150, 5, 61], "person");
        assert_eq!(ds.name(0), "ADE_train_00000001");
        // 0 → ignored, 1 … 150 → 0 … 149.
        assert_eq!(ds.load(0)?.label, [0, 0, 255, 255, 149, 148, 1, 2]);
        assert_eq!(ds.load(1)?.label, [255, 0, 1, 149, 74, 255, 2, 0]);
    }
    let val = data::open(Some(&t.0), "val", 1.0, 0)?;
    assert_eq!(val.len(), 1);
    assert_eq!(val.load(0)?.label, [4, 255, 255, 255, 255, 255, 255, 6]);
    assert!(err_text(data::open(Some(&t.0), "test", 1.0, 0)).contains("train and val"));
    // A stored value above 150 is an error naming the file, the value and the pixel.
    write_ade(
        &ade,
        "validation",
        "ADE_val_00000002",
        &[5, 0, 0, 0, 0, 0, 151, 7],
    )?;
    let val = data::open(Some(&t.0), "val", 1.0, 0)?;
    let e = err_text(val.load(1));
    assert!(
        e.contains("ADE_val_00000002.png")
            && e.contains("label value 151")
            && e.contains("(y 1, x 2)"),
        "{e}"
    );
    // An image without its annotation is an error naming it.
    std::fs::remove_file(ade.join("annotations/validation/ADE_val_00000001.png"))?;
    let e = err_text(data::open(Some(&t.0), "val", 1.0, 0));
    assert!(
        e.contains("ADE_val_00000001.jpg") && e.contains("without a label"),
        "{e}"
    );
    Ok(())
}

#[test]
fn coco_stuff_layout_reads_both_annotation_forms() -> R {
    let t = Tmp::new("coco-stuff");
    // Raw stuffthingmaps: COCO's 182 ids (0-based), 255 unlabelled.
    write_ade(
        &t.0,
        "train2017",
        "000000000009",
        &[0, 11, 12, 90, 91, 181, 255, 10],
    )?;
    write_ade(&t.0, "val2017", "000000000139", &[0, 0, 0, 0, 0, 0, 0, 0])?;
    let ds = data::open(Some(&t.0), "train", 1.0, 0)?;
    assert_eq!((ds.len(), ds.info().num_classes()), (1, 171));
    assert_eq!(ds.info().classes[0].name, "person");
    assert_eq!(ds.info().classes[170].name, "wood");
    // 11 and 90 are unused ids (ignored); 12 → 11, 91 → 80 (the first stuff class).
    assert_eq!(ds.load(0)?.label, [0, 255, 11, 255, 80, 170, 255, 10]);
    assert_eq!(ds.info().classes[80].name, "banner");
    // Converted maps beside them take over: their ids as stored.
    save_png_gray(
        &t.0.join("annotations/train2017/000000000009_labelTrainIds.png"),
        4,
        2,
        &[0, 170, 255, 3, 80, 1, 2, 9],
    )?;
    let ds = data::open(Some(&t.0), "train", 1.0, 0)?;
    assert_eq!(ds.name(0), "000000000009");
    assert_eq!(ds.load(0)?.label, [0, 170, 255, 3, 80, 1, 2, 9]);
    // A value that is neither a class nor ignored is an error naming file, value, pixel.
    write_ade(&t.0, "val2017", "000000000285", &[0, 0, 0, 0, 0, 0, 182, 0])?;
    let val = data::open(Some(&t.0), "val", 1.0, 0)?;
    let e = err_text(val.load(1));
    assert!(
        e.contains("000000000285.png") && e.contains("label value 182") && e.contains("(y 1, x 2)"),
        "{e}"
    );
    assert!(err_text(data::open(Some(&t.0), "test2017", 1.0, 0)).contains("train and val"));
    // An image without an annotation is an error naming it.
    let rgb = image::RgbImage::from_raw(4, 2, image_bytes(2, 4, 1)).ok_or("image")?;
    rgb.save(t.0.join("images/val2017/000000000632.jpg"))?;
    let e = err_text(data::open(Some(&t.0), "val", 1.0, 0));
    assert!(
        e.contains("000000000632.jpg") && e.contains("without a label"),
        "{e}"
    );
    Ok(())
}

/// Writes an NYUv2 export pair (4×2): `<split>/image/<stem>.png` and `<split>/<labels>/<stem>.png`.
fn write_nyu(root: &Path, split: &str, labels: &str, stem: &str, stored: &[u8; 8]) -> R {
    let (id, ld) = (
        root.join(split).join("image"),
        root.join(split).join(labels),
    );
    std::fs::create_dir_all(&id)?;
    std::fs::create_dir_all(&ld)?;
    save_png_rgb(&id.join(format!("{stem}.png")), 4, 2, &image_bytes(2, 4, 3))?;
    save_png_gray(&ld.join(format!("{stem}.png")), 4, 2, stored)?;
    Ok(())
}

#[test]
fn nyuv2_export_reads_40_or_13_classes() -> R {
    let t = Tmp::new("nyuv2-40");
    write_nyu(
        &t.0,
        "train",
        "label40",
        "0001",
        &[0, 1, 40, 22, 5, 0, 39, 2],
    )?;
    write_nyu(&t.0, "test", "label40", "0002", &[1, 1, 1, 1, 0, 0, 0, 0])?;
    let ds = data::open(Some(&t.0), "train", 1.0, 0)?;
    assert_eq!(ds.info().num_classes(), 40);
    assert_eq!(ds.info().classes[21].name, "ceiling");
    assert_eq!(
        ds.info().classes[0].color,
        [128, 0, 0],
        "the VOC colour map"
    );
    // 0 → ignored, 1 … 40 → 0 … 39.
    assert_eq!(ds.load(0)?.label, [255, 0, 39, 21, 4, 255, 38, 1]);
    // `val` reads the test split.
    let val = data::open(Some(&t.0), "val", 1.0, 0)?;
    assert_eq!((val.len(), val.name(0)), (1, "0002".to_string()));
    // A value above the class count names the file, the value and the pixel.
    write_nyu(&t.0, "test", "label40", "0003", &[1, 1, 1, 1, 0, 41, 0, 0])?;
    let e = err_text(data::open(Some(&t.0), "test", 1.0, 0)?.load(1));
    assert!(
        e.contains("0003.png") && e.contains("label value 41") && e.contains("(y 1, x 1)"),
        "{e}"
    );
    assert!(err_text(data::open(Some(&t.0), "validation", 1.0, 0)).contains("train and test"));
    // The 13-class labels where there are no 40-class ones.
    let t13 = Tmp::new("nyuv2-13");
    write_nyu(
        &t13.0,
        "train",
        "label13",
        "0001",
        &[0, 1, 13, 12, 5, 0, 3, 2],
    )?;
    let ds = data::open(Some(&t13.0), "train", 1.0, 0)?;
    assert_eq!(ds.info().num_classes(), 13);
    assert_eq!(ds.info().classes[10].name, "tv");
    assert_eq!(ds.load(0)?.label, [255, 0, 12, 11, 4, 255, 2, 1]);
    let e = err_text(data::open(Some(&t13.0), "test", 1.0, 0));
    assert!(e.contains("test/image") && e.contains("not found"), "{e}");
    Ok(())
}

fn tiny_sample() -> Sample {
    let (h, w) = (5, 7);
    Sample {
        image: image_bytes(h, w, 3),
        label: label_bytes(h, w, 3),
        height: h,
        width: w,
    }
}

#[test]
fn augmentation_is_deterministic_and_correct() {
    let s = tiny_sample();
    let aug = Augment {
        scale: (0.8, 1.6),
        crop: (4, 6),
        flip: true,
        jitter: 0.3,
    };
    let a = aug.apply(s.clone(), 255, 42, 3, 9);
    assert_eq!(
        a,
        aug.apply(s.clone(), 255, 42, 3, 9),
        "same (seed, epoch, index)"
    );
    assert_eq!(
        (a.height, a.width, a.image.len(), a.label.len()),
        (4, 6, 72, 24)
    );
    let others: Vec<Sample> = (0..6)
        .map(|e| aug.apply(s.clone(), 255, 42, e, 9))
        .collect();
    assert!(
        others.iter().any(|o| *o != a),
        "another epoch draws other parameters"
    );

    // Flip alone: either identity or the exact mirror, and both happen.
    let flip = Augment {
        flip: true,
        ..Augment::eval()
    };
    let mut mirrored = s.clone();
    for y in 0..s.height {
        for x in 0..s.width {
            let src = y * s.width + (s.width - 1 - x);
            mirrored.label[y * s.width + x] = s.label[src];
            let px = &s.image[src * 3..src * 3 + 3];
            mirrored.image[(y * s.width + x) * 3..(y * s.width + x) * 3 + 3].copy_from_slice(px);
        }
    }
    let outs: Vec<Sample> = (0..16)
        .map(|e| flip.apply(s.clone(), 255, 1, e, 0))
        .collect();
    assert!(outs.iter().all(|o| *o == s || *o == mirrored));
    assert!(outs.contains(&s) && outs.contains(&mirrored));

    // Crop larger than the image pads with the mean colour and the ignore index.
    let pad = Augment {
        crop: (8, 9),
        ..Augment::eval()
    };
    let p = pad.apply(s.clone(), 200, 0, 0, 0);
    assert_eq!((p.height, p.width), (8, 9));
    assert_eq!(&p.label[..7], &s.label[..7]);
    assert_eq!(&p.label[7..9], &[200, 200]);
    assert_eq!(&p.image[7 * 3..8 * 3], &data::augment::MEAN_RGB);
    assert_eq!(p.label[8 * 9 - 1], 200);

    assert_eq!(Augment::eval().apply(s.clone(), 255, 5, 5, 5), s);
    assert!(Augment {
        scale: (1.2, 1.1),
        ..Augment::eval()
    }
    .check()
    .is_err());
}

#[test]
fn normalize_is_chw_imagenet() {
    let s = Sample {
        image: vec![0, 128, 255, 255, 255, 255],
        label: vec![1, 255],
        height: 1,
        width: 2,
    };
    let (x, y) = normalize(s);
    let want = [
        (0.0 - 0.485) / 0.229,
        (1.0 - 0.485) / 0.229,
        (128.0 / 255.0 - 0.456) / 0.224,
        (1.0 - 0.456) / 0.224,
        (1.0 - 0.406) / 0.225,
        (1.0 - 0.406) / 0.225,
    ];
    for (a, b) in x.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    assert_eq!(y, [1, 255]);
}

fn builtin_small() -> Result<Arc<dyn Dataset>, Error> {
    Ok(Arc::from(data::open(None, "train", 0.25, 7)?))
}

fn take(l: &mut Loader, n: usize) -> Vec<data::Batch> {
    l.by_ref().take(n).filter_map(|b| b.ok()).collect()
}

#[test]
fn loader_order_is_deterministic_and_resumable() -> R {
    let ds = builtin_small()?;
    assert_eq!(ds.load(0)?.height, 24);
    let aug = Augment::train((16, 20));
    let start = LoaderState::default();
    // 64 samples, batch 10 → 6 batches per epoch (4 dropped); 9 batches cross an epoch.
    let mut l0 = Loader::new(ds.clone(), 10, aug, 3, 0, start)?;
    assert_eq!(l0.batches_per_epoch(), 6);
    assert_eq!(l0.queued(), 0, "workers = 0 prepares nothing ahead");
    let b0 = take(&mut l0, 9);
    assert_eq!(b0.len(), 9);
    assert_eq!(
        l0.state(),
        LoaderState {
            epoch: 1,
            batch_in_epoch: 3
        }
    );
    assert_eq!((b0[0].b, b0[0].h, b0[0].w), (10, 16, 20));
    assert_eq!(b0[0].images.len(), 10 * 3 * 16 * 20);
    assert_eq!(b0[0].labels.len(), 10 * 16 * 20);
    // Each epoch visits distinct indices; the two epochs are shuffled differently.
    let mut e0: Vec<usize> = b0[..6].iter().flat_map(|b| b.indices.clone()).collect();
    let e1: Vec<usize> = b0[6..].iter().flat_map(|b| b.indices.clone()).collect();
    assert_ne!(e0[..30], e1[..]);
    e0.sort_unstable();
    e0.dedup();
    assert_eq!(e0.len(), 60);
    for workers in [1, 3] {
        let mut l = Loader::new(ds.clone(), 10, aug, 3, workers, start)?;
        assert!(take(&mut l, 9) == b0, "workers = {workers}");
    }
    // Resume after 4 batches: the next 5 are the same.
    let mut l = Loader::new(ds.clone(), 10, aug, 3, 2, start)?;
    take(&mut l, 4);
    let st = l.state();
    drop(l);
    let mut r = Loader::new(ds.clone(), 10, aug, 3, 2, st)?;
    assert!(take(&mut r, 5) == b0[4..], "resumed batches differ");
    // Another seed, another order.
    let mut o = Loader::new(ds.clone(), 10, aug, 4, 0, start)?;
    assert_ne!(take(&mut o, 1)[0].indices, b0[0].indices);
    // Sequential pass keeps the last partial batch.
    let seq: Vec<_> = Loader::sequential(ds.clone(), 10, 2)?.collect::<Result<_, Error>>()?;
    assert_eq!(seq.len(), 7);
    assert_eq!(seq[6].indices, (60..64).collect::<Vec<_>>());
    assert!(Loader::new(ds, 65, aug, 0, 0, start).is_err());
    Ok(())
}

#[test]
fn stats_cache_is_written_reused_and_invalidated() -> R {
    let t = Tmp::new("stats");
    make_dataset(&t.0)?;
    let ds = data::open(Some(&t.0), "train", 1.0, 0)?;
    let (stats, path) = ClassStats::compute_or_load_with(ds.as_ref(), |_, _| {})?;
    let want = ClassStats::compute(ds.as_ref(), |_, _| {})?;
    assert_eq!(stats, want);
    let mut total = 0;
    for k in 0..3 {
        total += label_bytes(6, 10, k).iter().filter(|&&v| v != 255).count() as u64;
    }
    assert_eq!(stats.counts.iter().sum::<u64>(), total);
    let cache = t.0.join(".wgseg-stats-train-1.json");
    assert_eq!(path.as_deref(), Some(cache.as_path()));
    // Reused: a tampered cache with the right fingerprint is what comes back.
    let text = std::fs::read_to_string(&cache)?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let mut v2 = v.clone();
    v2["counts"] = serde_json::json!([1, 2, 3]);
    std::fs::write(&cache, serde_json::to_string(&v2)?)?;
    assert_eq!(ClassStats::compute_or_load(ds.as_ref())?.counts, [1, 2, 3]);
    // Invalidated: a changed label file (size and mtime) gives a new fingerprint.
    save_png_gray(&t.0.join("train/labels/a_img.png"), 10, 6, &[2; 60])?;
    let ds = data::open(Some(&t.0), "train", 1.0, 0)?;
    let fresh = ClassStats::compute_or_load(ds.as_ref())?;
    assert_eq!(fresh, ClassStats::compute(ds.as_ref(), |_, _| {})?);
    assert_ne!(fresh.counts, [1, 2, 3]);
    assert_eq!(
        fresh.counts[2],
        want.counts[2] - (label_bytes(6, 10, 1).iter().filter(|&&v| v == 2).count() as u64) + 60
    );
    Ok(())
}

#[test]
fn groups_follow_spec_thirds() -> R {
    let mut info = DatasetInfo::parse(TOML, Path::new("x"))?;
    info.classes = (0..7)
        .map(|i| data::ClassInfo {
            name: format!("c{i}"),
            color: [i as u8; 3],
        })
        .collect();
    // Sorted by count: 5 (300), 0 (100), 2 (50), 6 (20), 4 (7), 1 (5), 3 (0); ⌊7/3⌋ = 2.
    let stats = ClassStats {
        counts: vec![100, 5, 50, 0, 7, 300, 20],
    };
    let g = stats.groups(&info);
    let want = Groups {
        head: vec![0, 5],
        middle: vec![2, 4, 6],
        tail: vec![1, 3],
    };
    assert_eq!(g, want);
    // An explicit tail is used as given; head is still the top ⌊C/3⌋ of the rest.
    info.tail = Some(vec![4]);
    let g = stats.groups(&info);
    assert_eq!(
        (g.head, g.middle, g.tail),
        (vec![0, 5], vec![1, 2, 3, 6], vec![4])
    );
    // Ties break by class id; 10 classes → 3 / 4 / 3.
    info.tail = None;
    info.classes = (0..10).map(|i| info.classes[i % 7].clone()).collect();
    let g = ClassStats {
        counts: vec![1; 10],
    }
    .groups(&info);
    assert_eq!(
        (g.head, g.middle, g.tail),
        (vec![0, 1, 2], vec![3, 4, 5, 6], vec![7, 8, 9])
    );
    Ok(())
}

#[test]
fn palette_and_png_helpers() -> R {
    let t = Tmp::new("palette-helpers");
    let info = DatasetInfo::parse(TOML, Path::new("x"))?;
    let rgb = colorize(&[0, 2, 255, 9], &info);
    assert_eq!(rgb, [255, 0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0]);
    // 0.75·image + 0.25·mask, rounded: 125, 63.75 → 64, 191.25 → 191.
    assert_eq!(
        overlay(&[100, 0, 255], &[200, 255, 0], 0.25),
        [125, 64, 191]
    );
    let p = t.0.join("x.png");
    save_png_rgb(&p, 2, 2, &rgb)?;
    assert_eq!(load_image(&p)?, (rgb.clone(), 2, 2));
    let e = err_text(save_png_rgb(&p, 3, 2, &rgb));
    assert!(e.contains("x.png"), "{e}");
    let e = err_text(load_image(&t.0.join("missing.jpg")));
    assert!(e.contains("missing.jpg"), "{e}");
    std::fs::write(t.0.join("junk.jpg"), b"junk")?;
    let e = err_text(load_image(&t.0.join("junk.jpg")));
    assert!(e.contains("junk.jpg"), "{e}");
    // JPEG images pair with PNG labels by stem.
    make_dataset(&t.0)?;
    let jpg = t.0.join("train/images/a_img.jpg");
    image::RgbImage::from_raw(10, 6, image_bytes(6, 10, 0))
        .ok_or("raw image")?
        .save(&jpg)?;
    std::fs::remove_file(t.0.join("train/images/a_img.png"))?;
    let ds = data::open(Some(&t.0), "train", 1.0, 0)?;
    assert_eq!((ds.load(0)?.height, ds.name(0)), (6, "a_img".to_string()));
    Ok(())
}
