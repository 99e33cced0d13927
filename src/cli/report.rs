//! The evaluation table printed by `wgseg train` and `wgseg eval`.

use wgseg::train::metrics::{Groups, Scores};

fn cell(v: Option<f64>) -> String {
    v.map_or("     -".to_string(), |v| format!("{v:6.4}"))
}

/// Per-class IoU, accuracy and Dice with each class's group, then the summary rows.
pub fn print_scores(s: &Scores, groups: &Groups, classes: &[String], scale: f32) {
    let group = |c: usize| {
        if groups.head.contains(&c) {
            "head"
        } else if groups.tail.contains(&c) {
            "tail"
        } else {
            "middle"
        }
    };
    let width = classes.iter().map(String::len).max().unwrap_or(5).max(5);
    println!(
        "  {:<width$}  {:<6}  {:>6}  {:>6}  {:>6}",
        "class", "group", "IoU", "acc", "Dice"
    );
    for (c, name) in classes.iter().enumerate() {
        println!(
            "  {:<width$}  {:<6}  {}  {}  {}",
            name,
            group(c),
            cell(s.iou.get(c).copied().flatten()),
            cell(s.accuracy.get(c).copied().flatten()),
            cell(s.dice.get(c).copied().flatten()),
        );
    }
    println!(
        "  mIoU {:.4}   head {}   middle {}   tail {}",
        s.miou,
        cell(s.head_miou).trim(),
        cell(s.middle_miou).trim(),
        cell(s.tail_miou).trim()
    );
    println!(
        "  pixel accuracy {:.4}   mean accuracy {:.4}   mean Dice {:.4}   ({} labelled pixels at scale {scale})",
        s.pixel_accuracy, s.mean_accuracy, s.mean_dice, s.pixels
    );
}
