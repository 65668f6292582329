use super::*;
use rand::SeedableRng;

#[test]
fn default_counts_match_the_reference() {
    let l = |c, h, w, k| {
        ConvNetConfig::default_for(c, h, w, k)
            .model()
            .layout()
            .unwrap()
    };
    assert_eq!(l(3, 32, 32, 10).total, 320_010);
    assert_eq!(l(1, 28, 28, 10).total, 317_706);
    let l100 = l(3, 32, 32, 100);
    assert_eq!(l100.total, 504_420);
    assert_eq!(l100.tensors.len(), 14);
    let mt = l100.match_tensors();
    assert_eq!(mt.iter().filter(|m| m.is_vector == 0).count(), 4);
    assert_eq!((mt[0].rows, mt[0].cols), (128, 27));
    assert_eq!((mt[12].rows, mt[12].cols), (100, 2048));
    let names: Vec<&str> = l100.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        &names[..6],
        &[
            "features.0.weight",
            "features.0.bias",
            "features.1.weight",
            "features.1.bias",
            "features.4.weight",
            "features.4.bias"
        ]
    );
    assert_eq!(names[12], "classifier.weight");
}

#[test]
fn names_and_validation() {
    let feats = |m: &Model| {
        let l = m.layout().unwrap();
        l.tensor("classifier.weight").unwrap().shape[1]
    };
    let m = Model::from_name("ConvNetNP", 1, 28, 28, 10).unwrap();
    assert_eq!(feats(&m), 128 * 32 * 32);
    let m = Model::from_name("ConvNetD4", 3, 32, 32, 10).unwrap();
    assert_eq!(feats(&m), 128 * 2 * 2);
    let l = Model::from_name("ConvNetLN", 3, 32, 32, 10)
        .unwrap()
        .layout()
        .unwrap();
    assert_eq!(l.tensors[2].shape, vec![128, 32, 32]);
    assert_eq!(
        (l.match_tensors()[2].rows, l.match_tensors()[2].cols),
        (128, 1024)
    );
    assert!(ConvNetConfig::from_name("ConvNetXX", 3, 32, 32, 10).is_err());
    assert!(Model::from_name("ResNet99", 3, 32, 32, 10).is_err());
    let mut c = ConvNetConfig::default_for(3, 4, 4, 10);
    assert!(c.validate().is_err());
    c.depth = 2;
    assert!(c.validate().is_ok());
    c.width = 6;
    c.norm = Norm::Group;
    assert!(c.validate().is_err());
    c.width = 0;
    c.norm = Norm::Instance;
    assert!(c.validate().is_err());
}

#[test]
fn init_bounds_and_running() {
    let m = Model::from_name("ConvNetBN", 1, 28, 28, 10).unwrap();
    let l = m.layout().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let p: Vec<f32> = l.init_params(&mut rng);
    let seg = |n: &str| l.tensor(n).unwrap().seg.range();
    let w1 = &p[seg("features.0.weight")];
    assert!(w1.iter().all(|v| v.abs() <= 1.0 / 3.0));
    assert!(w1.iter().any(|v| v.abs() > 0.3));
    let w2 = &p[seg("features.4.weight")];
    let b2 = 1.0 / (1152f32).sqrt();
    assert!(w2.iter().all(|v| v.abs() <= b2) && w2.iter().any(|v| v.abs() > 0.9 * b2));
    assert!(p[seg("features.1.weight")].iter().all(|&v| v == 1.0));
    assert!(p[seg("features.1.bias")].iter().all(|&v| v == 0.0));
    let r: Vec<f32> = l.init_running();
    assert_eq!(r.len(), 3 * 256);
    assert!(r[..128].iter().all(|&v| v == 0.0) && r[128..256].iter().all(|&v| v == 1.0));
}
