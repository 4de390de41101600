//! The native form of the common condition shapes, evaluated on the JSON arguments directly.
//!
//! Most conditions compare `args.FIELD` with literals, joined by `&&`, `||` and `!`, or
//! test membership in a literal list (`args.currency in ['EUR', 'USD']`). For those, the
//! CEL interpreter's cost is mostly converting the arguments and resolving names. This
//! module compiles such an expression (from CEL's own parse tree) into a small tree that
//! reads the arguments as they arrived.
//!
//! It only ever answers on the success path, with CEL's semantics for the types it
//! handles (mixed integer and double comparison included). Whenever it meets something
//! it does not handle, or anything that would be an error (a missing field, a type CEL
//! would refuse), it answers "ask CEL", and the interpreter gives the answer or the
//! error, exactly as before. A differential test checks both agree.

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// A condition in native form.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Native {
    /// A literal.
    Lit(Scalar),
    /// `args.A.B...`: a path into the arguments.
    Arg(Vec<String>),
    /// `has(args.A...B)`: whether the object at the path has the field.
    Has(Vec<String>, String),
    /// A comparison.
    Cmp(Op, Box<Self>, Box<Self>),
    /// `&&`.
    And(Box<Self>, Box<Self>),
    /// `||`.
    Or(Box<Self>, Box<Self>),
    /// `!`.
    Not(Box<Self>),
    /// `x in [literal, ...]`.
    In(Box<Self>, Vec<Scalar>),
    /// `size(args.A...)` or `args.A....size()`: characters of a string, items of a list or map.
    Size(Vec<String>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(String),
}

/// A value met while evaluating, borrowed from the arguments or the tree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(&'a str),
}

impl Scalar {
    fn val(&self) -> Val<'_> {
        match self {
            Self::Null => Val::Null,
            Self::Bool(b) => Val::Bool(*b),
            Self::Int(i) => Val::Int(*i),
            Self::UInt(u) => Val::UInt(*u),
            Self::Double(d) => Val::Double(*d),
            Self::Str(s) => Val::Str(s),
        }
    }

    fn from_literal(literal: &LiteralValue) -> Option<Self> {
        Some(match literal {
            LiteralValue::Null => Self::Null,
            LiteralValue::Boolean(b) => Self::Bool(*b.inner()),
            LiteralValue::Int(i) => Self::Int(*i.inner()),
            LiteralValue::UInt(u) => Self::UInt(*u.inner()),
            LiteralValue::Double(d) => Self::Double(*d.inner()),
            LiteralValue::String(s) => Self::Str(s.inner().to_owned()),
            LiteralValue::Bytes(_) => return None,
        })
    }
}

impl Native {
    /// The native form of `expr`, if every part of it has one.
    pub(super) fn compile(expr: &IdedExpr) -> Option<Self> {
        match &expr.expr {
            Expr::Literal(literal) => Scalar::from_literal(literal).map(Native::Lit),
            Expr::Select(select) if select.test => {
                let path = if is_args(&select.operand) {
                    Vec::new()
                } else {
                    arg_path(&select.operand)?
                };
                Some(Self::Has(path, select.field.clone()))
            }
            Expr::Select(_) => arg_path(expr).map(Native::Arg),
            Expr::Call(call) if call.func_name == "size" => {
                let of = match (&call.target, call.args.as_slice()) {
                    (None, [of]) => of,
                    (Some(of), []) => of,
                    _ => return None,
                };
                arg_path(of).map(Native::Size)
            }
            Expr::Call(call) if call.target.is_none() => match call.args.as_slice() {
                [only] if call.func_name == operators::LOGICAL_NOT => {
                    Some(Self::Not(Box::new(Self::compile(only)?)))
                }
                [only] if call.func_name == operators::NEGATE => match &only.expr {
                    Expr::Literal(LiteralValue::Int(i)) => {
                        i.inner().checked_neg().map(|i| Self::Lit(Scalar::Int(i)))
                    }
                    Expr::Literal(LiteralValue::Double(d)) => {
                        Some(Self::Lit(Scalar::Double(-*d.inner())))
                    }
                    _ => None,
                },
                [left, right] => {
                    let op = match call.func_name.as_str() {
                        operators::LOGICAL_AND => {
                            return Some(Self::And(
                                Box::new(Self::compile(left)?),
                                Box::new(Self::compile(right)?),
                            ));
                        }
                        operators::LOGICAL_OR => {
                            return Some(Self::Or(
                                Box::new(Self::compile(left)?),
                                Box::new(Self::compile(right)?),
                            ));
                        }
                        operators::IN => {
                            let Expr::List(list) = &right.expr else {
                                return None;
                            };
                            if !list.optional_indices.is_empty() {
                                return None;
                            }
                            let items = list
                                .elements
                                .iter()
                                .map(|e| match &e.expr {
                                    Expr::Literal(l) => Scalar::from_literal(l),
                                    _ => None,
                                })
                                .collect::<Option<Vec<_>>>()?;
                            return Some(Self::In(Box::new(Self::compile(left)?), items));
                        }
                        operators::EQUALS => Op::Eq,
                        operators::NOT_EQUALS => Op::Ne,
                        operators::LESS => Op::Lt,
                        operators::LESS_EQUALS => Op::Le,
                        operators::GREATER => Op::Gt,
                        operators::GREATER_EQUALS => Op::Ge,
                        _ => return None,
                    };
                    Some(Self::Cmp(
                        op,
                        Box::new(Self::compile(left)?),
                        Box::new(Self::compile(right)?),
                    ))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The value, or `None` where CEL must answer (something unhandled, or an error).
    pub(super) fn eval<'a>(&'a self, args: &'a Map<String, Value>) -> Option<Val<'a>> {
        match self {
            Self::Lit(s) => Some(s.val()),
            Self::Arg(path) => scalar(lookup(args, path)?),
            Self::Has(path, field) => {
                let object = if path.is_empty() {
                    args
                } else {
                    lookup(args, path)?.as_object()?
                };
                Some(Val::Bool(object.contains_key(field)))
            }
            Self::Not(inner) => match inner.eval(args)? {
                Val::Bool(b) => Some(Val::Bool(!b)),
                _ => None,
            },
            Self::And(left, right) => match left.eval(args)? {
                Val::Bool(false) => Some(Val::Bool(false)),
                Val::Bool(true) => match right.eval(args)? {
                    Val::Bool(b) => Some(Val::Bool(b)),
                    _ => None,
                },
                _ => None,
            },
            Self::Or(left, right) => match left.eval(args)? {
                Val::Bool(true) => Some(Val::Bool(true)),
                Val::Bool(false) => match right.eval(args)? {
                    Val::Bool(b) => Some(Val::Bool(b)),
                    _ => None,
                },
                _ => None,
            },
            Self::Cmp(op, left, right) => {
                let (l, r) = (left.eval(args)?, right.eval(args)?);
                let holds = match op {
                    Op::Eq => equal(l, r)?,
                    Op::Ne => !equal(l, r)?,
                    Op::Lt => compare(l, r)? == Ordering::Less,
                    Op::Le => compare(l, r)? != Ordering::Greater,
                    Op::Gt => compare(l, r)? == Ordering::Greater,
                    Op::Ge => compare(l, r)? != Ordering::Less,
                };
                Some(Val::Bool(holds))
            }
            Self::Size(path) => {
                let n = match lookup(args, path)? {
                    Value::String(s) => s.chars().count(),
                    Value::Array(a) => a.len(),
                    Value::Object(o) => o.len(),
                    _ => return None,
                };
                i64::try_from(n).ok().map(Val::Int)
            }
            Self::In(needle, items) => {
                let needle = needle.eval(args)?;
                let mut found = false;
                for item in items {
                    found |= equal(item.val(), needle)?;
                }
                Some(Val::Bool(found))
            }
        }
    }
}

fn is_args(expr: &IdedExpr) -> bool {
    matches!(&expr.expr, Expr::Ident(name) if name == "args")
}

/// `args.A.B...` as the path `[A, B, ...]`.
fn arg_path(expr: &IdedExpr) -> Option<Vec<String>> {
    match &expr.expr {
        Expr::Select(select) if !select.test => {
            let mut path = if is_args(&select.operand) {
                Vec::new()
            } else {
                arg_path(&select.operand)?
            };
            path.push(select.field.clone());
            Some(path)
        }
        _ => None,
    }
}

fn lookup<'a>(args: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = args.get(first)?;
    for field in rest {
        value = value.as_object()?.get(field)?;
    }
    Some(value)
}

/// A JSON value as the interpreter is given it ([`super::cel_value`]); lists and maps are left to CEL.
fn scalar(value: &Value) -> Option<Val<'_>> {
    Some(match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => match super::exact_integer(n) {
            Some(Ok(i)) => Val::Int(i),
            Some(Err(u)) => Val::UInt(u),
            None => Val::Double(n.as_f64()?),
        },
        Value::String(s) => Val::Str(s),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// CEL's ordering: numbers across int, uint and double; strings; `None` for anything else.
fn compare(l: Val<'_>, r: Val<'_>) -> Option<Ordering> {
    match (l, r) {
        (Val::Int(a), Val::Int(b)) => Some(a.cmp(&b)),
        (Val::UInt(a), Val::UInt(b)) => Some(a.cmp(&b)),
        (Val::Int(a), Val::UInt(b)) => Some(if a < 0 {
            Ordering::Less
        } else {
            (a as u64).cmp(&b)
        }),
        (Val::UInt(a), Val::Int(b)) => Some(match i64::try_from(a) {
            Ok(a) => a.cmp(&b),
            Err(_) => Ordering::Greater,
        }),
        (Val::Double(a), Val::Double(b)) => a.partial_cmp(&b),
        (Val::Int(a), Val::Double(b)) => (a as f64).partial_cmp(&b),
        (Val::UInt(a), Val::Double(b)) => (a as f64).partial_cmp(&b),
        (Val::Double(a), Val::Int(b)) => a.partial_cmp(&(b as f64)),
        (Val::Double(a), Val::UInt(b)) => a.partial_cmp(&(b as f64)),
        (Val::Str(a), Val::Str(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// CEL's equality for values of one kind (numbers count as one); `None` across kinds.
fn equal(l: Val<'_>, r: Val<'_>) -> Option<bool> {
    match (l, r) {
        (Val::Null, Val::Null) => Some(true),
        (Val::Bool(a), Val::Bool(b)) => Some(a == b),
        _ => compare(l, r).map(|o| o == Ordering::Equal),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Bindings, Condition};
    use serde_json::{Map, Value, json};

    /// A small deterministic generator (xorshift), so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    const FIELDS: &[&str] = &[
        "args.amount",
        "args.currency",
        "args.flag",
        "args.nothing",
        "args.nested.x",
        "args.nested.missing",
        "args.list",
        "args.obj",
        "args.missing",
        "args.amount.deeper",
    ];

    const LITERALS: &[&str] = &[
        "0",
        "1",
        "-1",
        "500",
        "-9223372036854775808",
        "1u",
        "500u",
        "18446744073709551615u",
        "0.0",
        "0.5",
        "500.0",
        "-1.5",
        "1e300",
        "'EUR'",
        "'USD'",
        "''",
        "'ä'",
        "true",
        "false",
        "null",
        "b'x'",
    ];

    fn value(rng: &mut Rng) -> Value {
        match rng.below(17) {
            0 => json!(0),
            1 => json!(500),
            2 => json!(501),
            3 => json!(-3),
            4 => json!(u64::MAX),
            5 => json!(i64::MIN),
            6 => json!(0.5),
            7 => json!(499.99),
            8 => json!(500.0),
            9 => json!("EUR"),
            10 => json!("a"),
            11 => json!(true),
            12 => json!(null),
            13 => json!([1, "EUR"]),
            15 => json!("ä€𝄞"),
            14 => json!({"x": 1}),
            _ => json!(-0.0),
        }
    }

    fn args(rng: &mut Rng) -> Map<String, Value> {
        let mut m = Map::new();
        for name in ["amount", "currency", "flag", "nothing", "list", "obj"] {
            if rng.below(8) != 0 {
                m.insert(name.to_owned(), value(rng));
            }
        }
        match rng.below(4) {
            0 => {}
            1 => {
                m.insert("nested".to_owned(), value(rng));
            }
            _ => {
                m.insert("nested".to_owned(), json!({"x": value(rng)}));
            }
        }
        m
    }

    fn atom(rng: &mut Rng) -> String {
        match rng.below(6) {
            0..=1 => (*rng.pick(FIELDS)).to_owned(),
            2 => format!("size({})", rng.pick(FIELDS)),
            3 => format!("{}.size()", rng.pick(FIELDS)),
            _ => (*rng.pick(LITERALS)).to_owned(),
        }
    }

    fn expr(rng: &mut Rng, depth: usize) -> String {
        let choice = if depth == 0 {
            rng.below(4)
        } else {
            rng.below(9)
        };
        match choice {
            0 => atom(rng),
            1 | 2 => {
                let op = rng.pick(&["==", "!=", "<", "<=", ">", ">="]);
                format!("{} {op} {}", atom(rng), atom(rng))
            }
            3 => {
                let n = rng.below(4);
                let items: Vec<&str> = (0..n).map(|_| *rng.pick(LITERALS)).collect();
                format!("{} in [{}]", atom(rng), items.join(", "))
            }
            4 => format!("has({})", rng.pick(FIELDS)),
            5 => format!("!({})", expr(rng, depth - 1)),
            6 | 7 => format!("({}) && ({})", expr(rng, depth - 1), expr(rng, depth - 1)),
            _ => format!("({}) || ({})", expr(rng, depth - 1), expr(rng, depth - 1)),
        }
    }

    #[test]
    fn the_native_form_answers_exactly_as_the_interpreter_does() {
        let mut rng = Rng(0x5eed_cafe_f00d_1234);
        let (mut native, mut answered, mut cases) = (0, 0, 0);
        for _ in 0..3_000 {
            let source = expr(&mut rng, 3);
            let Ok(condition) = Condition::compile(&source) else {
                continue;
            };
            native += usize::from(condition.is_native());
            for _ in 0..8 {
                let map = args(&mut rng);
                let fast = Bindings::for_args(&map);
                let slow = Bindings::for_args(&map);
                cases += 1;
                answered += usize::from(condition.native(&fast).is_some());
                assert_eq!(
                    condition.holds(&fast),
                    condition.holds_by_interpreter(&slow),
                    "`{source}` over {map:?}"
                );
                assert_eq!(
                    condition.number(&fast),
                    condition.number_by_interpreter(&slow),
                    "`{source}` as a number over {map:?}"
                );
            }
        }
        // the comparison means something only if the native form answered often
        assert!(native > 2_000, "{native} of 3,000 expressions native");
        assert!(
            answered > cases / 4,
            "{answered} of {cases} answered natively"
        );
    }

    #[test]
    fn the_common_shapes_are_native_and_the_rest_is_left_to_the_interpreter() {
        for source in [
            "args.amount > 0 && args.amount <= 500",
            "args.currency in ['EUR', 'USD']",
            "!has(args.force) || args.force == false",
            "args.customer.tier != 'vip' && args.amount >= -1.5",
            "args.amount",
            "size(args.text) <= 1000 && args.items.size() > 0",
        ] {
            assert!(Condition::compile(source).unwrap().is_native(), "{source}");
        }
        for source in [
            "args.to.endsWith('@example.com')",
            "size('abc') < 10",
            "args.amount * 2.0 < 100.0",
            "args.items.all(i, i > 0)",
            "args.currency in args.allowed",
            "other.amount > 0",
        ] {
            assert!(!Condition::compile(source).unwrap().is_native(), "{source}");
        }
    }

    #[test]
    fn errors_still_come_from_the_interpreter_in_its_words() {
        let c = Condition::compile("args.amount <= 500").unwrap();
        let map = Map::new();
        let err = c.holds(&Bindings::for_args(&map)).unwrap_err();
        assert!(
            err.to_string().contains("argument `amount` is missing"),
            "{err}"
        );
    }
}
