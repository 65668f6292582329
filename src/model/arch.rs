//! Every architecture of the reference's network factory as a [`Model`] description,
//! with the reference's module names (so parameter names are its `state_dict` keys),
//! its padding rules for 1-channel input and its fixed classifier sizes
//! (`docs/architectures.md` lists them with their shapes and parameter counts).

use super::convnet::ConvNetConfig;
use super::layer::{Layer, Model, Norm};
use crate::backend::Act;
use crate::error::{Error, Result};

/// Every architecture name [`Model::from_name`] accepts.
pub const ARCHITECTURES: &[&str] = &[
    "ConvNet",
    "ConvNetD1",
    "ConvNetD2",
    "ConvNetD3",
    "ConvNetD4",
    "ConvNetW32",
    "ConvNetW64",
    "ConvNetW128",
    "ConvNetW256",
    "ConvNetAS",
    "ConvNetAR",
    "ConvNetAL",
    "ConvNetASwish",
    "ConvNetASwishBN",
    "ConvNetNN",
    "ConvNetBN",
    "ConvNetLN",
    "ConvNetIN",
    "ConvNetGN",
    "ConvNetNP",
    "ConvNetMP",
    "ConvNetAP",
    "MLP",
    "LeNet",
    "AlexNet",
    "AlexNetBN",
    "VGG11",
    "VGG11BN",
    "ResNet18",
    "ResNet18BN",
    "ResNet18BN_AP",
];

/// How an architecture is sized: the reference's (`REFERENCE`), or a miniature for
/// gradient checks (every width divided, classifier inputs inferred from the input
/// size instead of the reference's fixed figures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizing {
    /// Every channel / hidden width is divided by this (at least 2 remain).
    pub width_div: usize,
    /// Keep the reference's fixed classifier input sizes (and so its input-size rules).
    pub reference: bool,
}

impl Sizing {
    /// The reference's sizes.
    pub const REFERENCE: Sizing = Sizing {
        width_div: 1,
        reference: true,
    };
    /// A miniature: widths divided by `width_div`, sizes inferred.
    pub fn miniature(width_div: usize) -> Self {
        Sizing {
            width_div: width_div.max(1),
            reference: false,
        }
    }
    fn w(&self, width: usize) -> usize {
        if self.width_div == 1 {
            width
        } else {
            (width / self.width_div).max(2)
        }
    }
}

/// Numbers the children of an `nn.Sequential` as PyTorch does: every module takes an
/// index, named or not (`features.0` conv, `features.1` ReLU, ...).
struct Seq {
    prefix: String,
    next: usize,
    layers: Vec<Layer>,
}

impl Seq {
    fn new(prefix: &str) -> Self {
        Seq {
            prefix: prefix.to_string(),
            next: 0,
            layers: Vec::new(),
        }
    }
    fn name(&mut self) -> String {
        let n = format!("{}.{}", self.prefix, self.next);
        self.next += 1;
        n
    }
    fn conv(&mut self, out: usize, k: usize, pad: usize) {
        let n = self.name();
        self.layers.push(Layer::conv(n, out, k, 1, pad));
    }
    fn norm(&mut self, kind: Norm) {
        let n = self.name();
        self.layers.push(Layer::norm(n, kind));
    }
    fn other(&mut self, layer: Layer) {
        self.next += 1;
        self.layers.push(layer);
    }
}

impl Model {
    /// The architecture `name` (one of [`ARCHITECTURES`], case-sensitive) for
    /// `in_channels x image_h x image_w` images and `num_classes` classes, sized as
    /// the reference. Errors name the model and the size it cannot take.
    pub fn from_name(
        name: &str,
        in_channels: usize,
        image_h: usize,
        image_w: usize,
        num_classes: usize,
    ) -> Result<Self> {
        Self::build(
            name,
            in_channels,
            image_h,
            image_w,
            num_classes,
            Sizing::REFERENCE,
        )
    }

    /// [`Model::from_name`] with a [`Sizing`] (miniatures for tests). The result is
    /// validated (shapes inferred once, [`super::plan::compile`]).
    pub fn build(
        name: &str,
        in_channels: usize,
        image_h: usize,
        image_w: usize,
        num_classes: usize,
        sizing: Sizing,
    ) -> Result<Self> {
        let (c, k) = (in_channels, num_classes);
        let grey = c == 1;
        let mut m = Model {
            name: name.to_string(),
            in_channels,
            image_h,
            image_w,
            num_classes,
            layers: Vec::new(),
            fixed_features: None,
        };
        let fixed = |f: usize, sizes: &'static str| sizing.reference.then_some((f, sizes));
        let w = |x: usize| sizing.w(x);
        match name {
            _ if name.starts_with("ConvNet") => {
                let mut cfg = ConvNetConfig::from_name(name, c, image_h, image_w, k)?;
                cfg.width = w(cfg.width);
                m.layers = cfg.layers();
            }
            "MLP" => {
                m.layers = vec![
                    Layer::Flatten,
                    Layer::linear("fc_1", w(128)),
                    Layer::Act(Act::Relu),
                    Layer::linear("fc_2", w(128)),
                    Layer::Act(Act::Relu),
                    Layer::linear("fc_3", k),
                ];
                m.fixed_features = fixed(
                    if grey { 28 * 28 } else { 32 * 32 * 3 },
                    "28x28 images with 1 channel or 32x32 images with 3 channels",
                );
            }
            "LeNet" => {
                let mut f = Seq::new("features");
                f.conv(w(6), 5, if grey { 2 } else { 0 });
                f.other(Layer::Act(Act::Relu));
                f.other(Layer::max_pool(2, 2));
                f.conv(w(16), 5, 0);
                f.other(Layer::Act(Act::Relu));
                f.other(Layer::max_pool(2, 2));
                m.layers = f.layers;
                m.layers.extend([
                    Layer::Flatten,
                    Layer::linear("fc_1", w(120)),
                    Layer::Act(Act::Relu),
                    Layer::linear("fc_2", w(84)),
                    Layer::Act(Act::Relu),
                    Layer::linear("fc_3", k),
                ]);
                m.fixed_features = fixed(
                    w(16) * 5 * 5,
                    "28x28 input with 1 channel or 32x32 input with 3 channels",
                );
            }
            "AlexNet" | "AlexNetBN" => {
                let bn = name == "AlexNetBN";
                let mut f = Seq::new("features");
                let block = |f: &mut Seq, out: usize, kk: usize, pad: usize, pool: bool| {
                    f.conv(out, kk, pad);
                    if bn {
                        f.norm(Norm::Batch);
                    }
                    f.other(Layer::Act(Act::Relu));
                    if pool {
                        f.other(Layer::max_pool(2, 2));
                    }
                };
                block(&mut f, w(128), 5, if grey { 4 } else { 2 }, true);
                block(&mut f, w(192), 5, 2, true);
                block(&mut f, w(256), 3, 1, false);
                block(&mut f, w(192), 3, 1, false);
                block(&mut f, w(192), 3, 1, true);
                m.layers = f.layers;
                m.layers.extend([Layer::Flatten, Layer::linear("fc", k)]);
                m.fixed_features = fixed(
                    w(192) * 4 * 4,
                    "28x28 input with 1 channel or 32x32 input with 3 channels",
                );
            }
            "VGG11" | "VGG11BN" => {
                let norm = if name == "VGG11BN" {
                    Norm::Batch
                } else {
                    Norm::Instance
                };
                let cfg: [Option<usize>; 13] = [
                    Some(64),
                    None,
                    Some(128),
                    None,
                    Some(256),
                    Some(256),
                    None,
                    Some(512),
                    Some(512),
                    None,
                    Some(512),
                    Some(512),
                    None,
                ];
                let mut f = Seq::new("features");
                for (i, entry) in cfg.iter().enumerate() {
                    match entry {
                        None => f.other(Layer::max_pool(2, 2)),
                        Some(out) => {
                            f.conv(w(*out), 3, if grey && i == 0 { 3 } else { 1 });
                            f.norm(norm);
                            f.other(Layer::Act(Act::Relu));
                        }
                    }
                }
                f.other(Layer::avg_pool(1, 1));
                m.layers = f.layers;
                m.layers
                    .extend([Layer::Flatten, Layer::linear("classifier", k)]);
                m.fixed_features = fixed(
                    w(512),
                    "28x28 input with 1 channel or 32x32 input (five 2x2 poolings to 1x1)",
                );
            }
            "ResNet18" | "ResNet18BN" | "ResNet18BN_AP" => {
                let norm = if name == "ResNet18" {
                    Norm::Instance
                } else {
                    Norm::Batch
                };
                let ap = name == "ResNet18BN_AP";
                m.layers = resnet18(k, norm, ap, sizing, image_h.min(image_w));
                m.fixed_features = if ap {
                    fixed(
                        w(512) * if grey { 9 } else { 16 },
                        "28x28 input with 1 channel or 32x32 input with 3 channels",
                    )
                } else {
                    fixed(
                        w(512),
                        "28x28 or 32x32 input (a 4x4 map before the final 4x4 pooling)",
                    )
                };
            }
            other => {
                return Err(Error::option(
                    "model",
                    format!(
                        "unknown model '{other}' (expected one of: {})",
                        ARCHITECTURES.join(", ")
                    ),
                ))
            }
        }
        super::plan::compile(&m, 1)?;
        Ok(m)
    }
}

/// ResNet-18 (BasicBlock, [2, 2, 2, 2], widths 64/128/256/512, 3x3 stem with stride
/// 1, convolutions without bias). `ap`: every stride-2 convolution becomes a
/// stride-1 convolution followed by 2x2 average pooling (also in the shortcut), and
/// the final pooling is 1x1. Otherwise the final pooling is 4x4 (a miniature pools
/// its whole remaining map instead).
fn resnet18(k: usize, norm: Norm, ap: bool, sizing: Sizing, side: usize) -> Vec<Layer> {
    let w = |x: usize| sizing.w(x);
    let mut layers = vec![
        Layer::conv_nobias("conv1", w(64), 3, 1, 1),
        Layer::norm("bn1", norm),
        Layer::Act(Act::Relu),
    ];
    let mut in_planes = w(64);
    let mut size = side;
    for (li, planes) in [64, 128, 256, 512].into_iter().enumerate() {
        let planes = w(planes);
        for bi in 0..2 {
            let stride = if li > 0 && bi == 0 { 2 } else { 1 };
            let p = format!("layer{}.{bi}", li + 1);
            let conv_stride = if ap { 1 } else { stride };
            let mut body = vec![
                Layer::conv_nobias(format!("{p}.conv1"), planes, 3, conv_stride, 1),
                Layer::norm(format!("{p}.bn1"), norm),
                Layer::Act(Act::Relu),
            ];
            if ap && stride != 1 {
                body.push(Layer::avg_pool(2, 2));
            }
            body.push(Layer::conv_nobias(format!("{p}.conv2"), planes, 3, 1, 1));
            body.push(Layer::norm(format!("{p}.bn2"), norm));
            let mut shortcut = Vec::new();
            if stride != 1 || in_planes != planes {
                shortcut.push(Layer::conv_nobias(
                    format!("{p}.shortcut.0"),
                    planes,
                    1,
                    conv_stride,
                    0,
                ));
                if ap {
                    shortcut.push(Layer::avg_pool(2, 2));
                    shortcut.push(Layer::norm(format!("{p}.shortcut.2"), norm));
                } else {
                    shortcut.push(Layer::norm(format!("{p}.shortcut.1"), norm));
                }
            }
            layers.push(Layer::Residual { body, shortcut });
            layers.push(Layer::Act(Act::Relu));
            in_planes = planes;
            if stride == 2 {
                size = if ap { size / 2 } else { (size + 2 - 3) / 2 + 1 };
            }
        }
    }
    let final_pool = if ap {
        1
    } else if sizing.reference {
        4
    } else {
        size.clamp(1, 4)
    };
    layers.push(Layer::avg_pool(final_pool, final_pool));
    layers.push(Layer::Flatten);
    layers.push(Layer::linear("classifier", k));
    layers
}
