//! The training-loss table and the memory bank's settings as a user sees them: `train.loss`
//! and the `[loss]` / `[tmb]` keys of a run config (docs/training.md), their flags and
//! `--help`, errors for bad names and unknown keys, and configs written before the table
//! existed.

use std::path::Path;

use clap::{Args, Command, FromArgMatches};
use wgseg::data::{BankConfig, BankFlags};
use wgseg::losses::{Loss, LossConfig, LossFlags, PatCurve};
use wgseg::train::RunConfig;

/// A `config.toml` as a run directory held it before the loss table was typed (written by
/// `wgseg train --steps 1`): it must load unchanged, for `--resume`.
const OLD_RUN_CONFIG: &str = r#"[model]
stem = 16
widths = [16, 32, 64, 128]
depths = [1, 1, 1, 1]
aspp = 64
low = 48
decoder = 64
output_stride = 16
separable_aspp = false

[train]
steps = 1
batch_size = 8
crop = 96
optimizer = "sgd"
lr = 0.01
momentum = 0.9
weight_decay = 0.0001
poly_power = 0.9
warmup_steps = 0
warmup_factor = 0.1
clip_norm = 0.0
loss = "ce"
seed = 0
workers = 2
log_every = 10
val_every = 0
checkpoint_every = 50

[data]
scale = 1.0
aug_scale = [0.75, 1.25]
flip = true
jitter = 0.0

[loss]
gamma = 2.0
cb_beta = 0.9999
ldam_s = 30.0
ldam_max_margin = 0.5
blv_sigma = 0.5
pat_curve = "falling"
pat_t = 20.0
pat_eps = 0.0
pat_detach = false
auc_lambda = 1.0
auc_surrogate = "square"
auc_method = "closed"
auc_cap = 4096

[tmb]
enabled = false
size = 5
rs = 1.0
resize = 1.0
tail = []
"#;

fn parse(text: &str) -> Result<RunConfig, String> {
    RunConfig::parse(text, Path::new("test.toml")).map_err(|e| e.to_string())
}

/// The `[model]` table of the old config, for building small configs.
fn model() -> String {
    let end = OLD_RUN_CONFIG.find("[train]").unwrap_or(0);
    OLD_RUN_CONFIG[..end].to_string()
}

#[test]
fn an_old_run_config_loads_and_round_trips() {
    let c = parse(OLD_RUN_CONFIG).unwrap();
    assert_eq!(c.train.loss, Loss::Ce);
    assert_eq!(c.loss, LossConfig::default());
    assert_eq!(c.tmb, BankConfig::default());
    // Saved again, it reads back equal, with the same keys and values as before.
    let text = c.to_toml().unwrap();
    assert_eq!(parse(&text).unwrap(), c);
    // Every key of the old file keeps its value; the only keys added since are the model's
    // architecture name and cross-entropy's label smoothing, at their defaults.
    let flat = |t: &str| -> std::collections::BTreeMap<String, toml::Value> {
        let t: toml::Table = toml::from_str(t).unwrap();
        t.iter()
            .flat_map(|(table, v)| {
                v.as_table()
                    .unwrap()
                    .iter()
                    .map(move |(k, v)| (format!("{table}.{k}"), v.clone()))
            })
            .collect()
    };
    let (old, mut new) = (flat(OLD_RUN_CONFIG), flat(&text));
    assert_eq!(
        new.remove("model.arch"),
        Some(toml::Value::String("deeplabv3plus".into())),
        "{text}"
    );
    assert_eq!(
        new.remove("loss.label_smoothing"),
        Some(toml::Value::Float(0.0)),
        "{text}"
    );
    // The data-parallel keys came later, with their defaults.
    assert_eq!(
        new.remove("train.bucket_mb"),
        Some(toml::Value::Float(25.0)),
        "{text}"
    );
    assert_eq!(
        new.remove("train.sync_bn"),
        Some(toml::Value::Boolean(false)),
        "{text}"
    );
    assert_eq!(old, new, "{text}");
}

#[test]
fn every_key_and_name_reads_and_round_trips() {
    let text = format!(
        "{}[train]\nloss = \"cb-focal\"\n[loss]\ngamma = 1\ncb_beta = 0.99\nldam_s = 10\n\
         ldam_max_margin = 0.3\nblv_sigma = 1.5\npat_curve = \"rising\"\npat_t = 5\n\
         pat_eps = 0.1\npat_detach = true\nauc_lambda = 4.0\nauc_margin = 0.7\n\
         auc_surrogate = \"logistic\"\nauc_method = \"pairwise\"\nauc_cap = 64\n\
         label_smoothing = 0.1\n[tmb]\nenabled = true\nsize = 3\nrs = 0.5\nresize = 0.8\ntail = [2, 5]\n",
        model()
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.train.loss, Loss::CbFocal);
    let l = &c.loss;
    assert_eq!((l.focal.gamma, l.cb.beta), (1.0, 0.99));
    assert_eq!((l.ldam.s, l.ldam.max_margin, l.blv.sigma), (10.0, 0.3, 1.5));
    assert_eq!(
        (l.pat.curve, l.pat.t, l.pat.eps, l.pat.detach),
        (PatCurve::Rising, 5.0, 0.1, true)
    );
    assert_eq!(
        (l.auc.lambda, l.auc.margin, l.auc.cap),
        (4.0, Some(0.7), 64)
    );
    assert_eq!(l.ce.label_smoothing, 0.1);
    assert_eq!(l.auc.surrogate.to_string(), "logistic");
    assert_eq!(l.auc.method.to_string(), "pairwise");
    assert_eq!(
        (
            c.tmb.enabled,
            c.tmb.size,
            c.tmb.rs,
            c.tmb.resize,
            c.tmb.tail.clone()
        ),
        (true, 3, 0.5, 0.8, vec![2, 5])
    );
    assert_eq!(parse(&c.to_toml().unwrap()).unwrap(), c);
}

#[test]
fn loss_names_are_one_list() {
    let names: Vec<_> = Loss::ALL.iter().map(|l| l.name()).collect();
    assert_eq!(
        names,
        ["ce", "focal", "cb", "cb-focal", "bms", "ldam", "blv", "pat", "aucseg"]
    );
    for &l in Loss::ALL {
        assert_eq!(l.name().parse::<Loss>().unwrap(), l);
        assert_eq!(l.to_string(), l.name());
        let c = parse(&format!("{}[train]\nloss = \"{}\"\n", model(), l.name())).unwrap();
        assert_eq!(c.train.loss, l);
        let v = <Loss as clap::ValueEnum>::from_str(l.name(), false).unwrap();
        assert_eq!(v, l, "clap and serde agree on {}", l.name());
    }
    let e = "softmax".parse::<Loss>().unwrap_err().to_string();
    assert!(e.contains("softmax") && e.contains("cb-focal, bms"), "{e}");
}

#[test]
fn bad_names_values_and_keys_are_errors_that_say_what_is_allowed() {
    let cases = [
        (
            "[train]\nloss = \"softmax\"\n",
            "`ce`, `focal`, `cb`, `cb-focal`",
        ),
        ("[loss]\npat_curve = \"up\"\n", "`falling` or `rising`"),
        (
            "[loss]\nauc_surrogate = \"hinge\"\n",
            "`square`, `sq-hinge`, `logistic`",
        ),
        ("[loss]\nauc_method = \"tiled\"\n", "`closed` or `pairwise`"),
        (
            "[loss]\ngama = 2.0\n",
            "unknown key loss.gama (known: label_smoothing, gamma, cb_beta",
        ),
        (
            "[loss]\nignore_index = 3\n",
            "unknown key loss.ignore_index",
        ),
        ("[loss]\ngamma = -1.0\n", "loss.gamma = -1: must be ≥ 0"),
        (
            "[loss]\ncb_beta = 1.0\n",
            "loss.cb_beta = 1: must be in (0, 1)",
        ),
        ("[loss]\npat_t = 0\n", "loss.pat_t = 0: must be > 0"),
        ("[loss]\nauc_cap = 1\n", "loss.auc_cap = 1: must be ≥ 2"),
        (
            "[loss]\nauc_surrogate = \"logistic\"\n",
            "needs loss.auc_method = \"pairwise\"",
        ),
        ("[tmb]\nslots = 3\n", "unknown field `slots`"),
        ("[tmb]\nsize = 0\n", "tmb.size"),
        ("[tmb]\nrs = 1.5\n", "tmb.rs"),
    ];
    for (table, want) in cases {
        let e = parse(&format!("{}{table}", model())).unwrap_err();
        assert!(e.contains(want), "{table}: {e}");
        assert!(e.contains("test.toml"), "{table}: the file is named: {e}");
    }
}

/// The help text of `--flag` in `cmd`.
fn help_of(cmd: &Command, flag: &str) -> String {
    cmd.get_arguments()
        .find(|a| a.get_id() == flag)
        .and_then(|a| a.get_help())
        .map(|h| h.to_string())
        .unwrap_or_else(|| panic!("no help for --{flag}"))
}

/// The value of `key` in a table serialised from `v`, as text (`None`: absent).
fn key_text<T: serde::Serialize>(v: &T, key: &str) -> Option<toml::Value> {
    let t: toml::Table = toml::from_str(&toml::to_string(v).unwrap()).unwrap();
    t.get(key).cloned()
}

/// The default text of `--help` agrees with the value `Default` serialises.
fn check_default(flag: &str, help: &str, default: Option<toml::Value>) {
    let shown = help
        .split("[default: ")
        .nth(1)
        .map(|s| s.trim_end_matches(']').to_string());
    match (default, shown) {
        (Some(toml::Value::Float(v)), Some(s)) => {
            assert_eq!(s.parse::<f64>().unwrap(), v, "--{flag}: {help}")
        }
        (Some(toml::Value::Integer(v)), Some(s)) => {
            assert_eq!(s.parse::<i64>().unwrap(), v, "--{flag}: {help}")
        }
        (Some(toml::Value::String(v)), Some(s)) => assert_eq!(s, v, "--{flag}: {help}"),
        (Some(toml::Value::Boolean(false)), None) => {} // an off switch
        (Some(toml::Value::Array(a)), Some(_)) if a.is_empty() => {} // explained in words
        (None, Some(s)) => assert!(s.contains("for sq-hinge"), "--{flag}: {help}"),
        (d, s) => panic!("--{flag}: default {d:?}, help shows {s:?}: {help}"),
    }
}

/// A value for `--flag` other than the default, and the config value it must become.
fn other_value(
    cmd: &Command,
    flag: &str,
    default: &Option<toml::Value>,
) -> (Vec<String>, toml::Value) {
    let arg = cmd.get_arguments().find(|a| a.get_id() == flag).unwrap();
    let possible = arg.get_possible_values();
    match default {
        Some(toml::Value::Boolean(false)) => (vec![], toml::Value::Boolean(true)),
        Some(toml::Value::String(d)) => {
            let v = possible
                .iter()
                .map(|p| p.get_name().to_string())
                .find(|n| n != d)
                .unwrap();
            (vec![v.clone()], toml::Value::String(v))
        }
        Some(toml::Value::Integer(d)) => (vec![(d + 3).to_string()], toml::Value::Integer(d + 3)),
        Some(toml::Value::Array(_)) => (
            vec!["3,1".into()],
            toml::Value::Array(vec![toml::Value::Integer(3), toml::Value::Integer(1)]),
        ),
        // Floats and the unset margin.
        _ => (vec!["0.375".into()], toml::Value::Float(0.375)),
    }
}

/// Every flag of `F` shows its default from `T::default()` and sets exactly its key.
fn check_flags<T, F>(keys: &[(&str, &str)], apply: impl Fn(&F, &mut T))
where
    T: Default + serde::Serialize,
    F: Args + FromArgMatches,
{
    let cmd = F::augment_args(Command::new("t"));
    assert!(!keys.is_empty());
    let base: toml::Table = toml::from_str(&toml::to_string(&T::default()).unwrap()).unwrap();
    for (flag, key) in keys {
        let default = key_text(&T::default(), key);
        check_default(flag, &help_of(&cmd, flag), default.clone());
        let (values, want) = other_value(&cmd, flag, &default);
        let mut argv = vec!["t".to_string(), format!("--{}", flag.replace('_', "-"))];
        argv.extend(values);
        let m = cmd
            .clone()
            .try_get_matches_from(&argv)
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let f = F::from_arg_matches(&m).unwrap();
        let mut t = T::default();
        apply(&f, &mut t);
        let mut got: toml::Table = toml::from_str(&toml::to_string(&t).unwrap()).unwrap();
        assert_eq!(got.remove(*key), Some(want), "--{flag} sets {key}");
        let mut rest = base.clone();
        rest.remove(*key);
        assert_eq!(got, rest, "--{flag} sets nothing but {key}");
    }
}

#[test]
fn every_loss_flag_shows_its_default_and_sets_its_key() {
    let keys = LossFlags::keys();
    let flags: Vec<_> = keys.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        flags,
        [
            "label_smoothing",
            "gamma",
            "cb_beta",
            "ldam_s",
            "ldam_margin",
            "blv_sigma",
            "pat_curve",
            "pat_t",
            "pat_eps",
            "pat_detach",
            "auc_lambda",
            "auc_margin",
            "auc_surrogate",
            "auc_method",
            "auc_cap"
        ]
    );
    check_flags::<LossConfig, LossFlags>(&keys, |f, c| f.apply(c));
    // Every key the table writes has a flag.
    let table: toml::Table =
        toml::from_str(&toml::to_string(&LossConfig::default()).unwrap()).unwrap();
    for key in table.keys() {
        assert!(keys.iter().any(|(_, k)| k == key), "no flag for loss.{key}");
    }
}

#[test]
fn every_bank_flag_shows_its_default_and_sets_its_key() {
    let keys = BankFlags::KEYS;
    let flags: Vec<_> = keys.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        flags,
        ["tmb", "tmb_size", "tmb_rs", "tmb_resize", "tmb_tail"]
    );
    check_flags::<BankConfig, BankFlags>(keys, |f, c| f.apply(c));
    let table: toml::Table =
        toml::from_str(&toml::to_string(&BankConfig::default()).unwrap()).unwrap();
    for key in table.keys() {
        assert!(keys.iter().any(|(_, k)| k == key), "no flag for tmb.{key}");
    }
}

#[test]
fn bad_flag_values_list_the_allowed_ones() {
    let cmd = LossFlags::augment_args(Command::new("t"));
    for (argv, want) in [
        (
            ["t", "--pat-curve", "up"],
            "[possible values: falling, rising]",
        ),
        (
            ["t", "--auc-method", "tiled"],
            "[possible values: closed, pairwise]",
        ),
        (
            ["t", "--auc-surrogate", "hinge"],
            "square, sq-hinge, logistic",
        ),
        (
            ["t", "--gamma", "two"],
            "invalid value 'two' for '--gamma <GAMMA>'",
        ),
    ] {
        let e = cmd
            .clone()
            .try_get_matches_from(argv)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{argv:?}: {e}");
    }
    // A flag not given leaves the config alone; a switch takes no value.
    let m = cmd.clone().try_get_matches_from(["t"]).unwrap();
    let f = LossFlags::from_arg_matches(&m).unwrap();
    assert!(!f.any());
    let mut c = LossConfig::default();
    c.pat.detach = true;
    f.apply(&mut c);
    assert!(c.pat.detach);
    assert!(cmd
        .clone()
        .try_get_matches_from(["t", "--pat-detach", "true"])
        .is_err());
}

/// `train.loss = "ce"` with `loss.label_smoothing` computes `ce` with that smoothing: the
/// table hands the key to the loss (the same value and gradient as a direct call).
#[test]
fn label_smoothing_reaches_the_cross_entropy() {
    use wgseg::losses::{ce, CeOptions, StepInput};
    use wgseg::{backward, Device, Tensor};
    let dev = Device::Cpu;
    let c = parse(&format!(
        "{}[train]\nloss = \"ce\"\n[loss]\nlabel_smoothing = 0.2\n",
        model()
    ))
    .unwrap();
    let logits: Vec<f32> = (0..2 * 3 * 2 * 2)
        .map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0)
        .collect();
    let x = Tensor::from_vec(logits, [2, 3, 2, 2], &dev)
        .unwrap()
        .as_param();
    let y = Tensor::from_u32(vec![0, 1, 2, 255, 2, 2, 1, 0], [2, 2, 2], &dev).unwrap();
    let step = StepInput {
        logits: &x,
        labels: &y,
        counts: &[10, 20, 30],
        ignore_index: 255,
        seed: 0,
    };
    let via_table = c.train.loss.compute(&c.loss, &step).unwrap();
    let direct = ce(
        &x,
        &y,
        &CeOptions {
            label_smoothing: 0.2,
            ..Default::default()
        },
    )
    .unwrap();
    let plain = ce(&x, &y, &CeOptions::default()).unwrap();
    let (a, b, p) = (
        via_table.to_vec_f64().unwrap()[0],
        direct.to_vec_f64().unwrap()[0],
        plain.to_vec_f64().unwrap()[0],
    );
    assert_eq!(a, b);
    assert!(
        (a - p).abs() > 1e-3,
        "smoothing changed nothing: {a} vs {p}"
    );
    let ga = backward(&via_table)
        .unwrap()
        .get(&x)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let gb = backward(&direct)
        .unwrap()
        .get(&x)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    assert_eq!(ga, gb);
    // Out of range in a config: an error naming the key.
    let e = parse(&format!("{}[loss]\nlabel_smoothing = 1.5\n", model())).unwrap_err();
    assert!(e.contains("label_smoothing"), "{e}");
}
