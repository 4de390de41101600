//! CEL conditions on an action's arguments, compiled once and evaluated per call.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::{Context, Env, Program, Value as CelValue};
use native::{Native, Val};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::{Arc, OnceLock};

mod native;

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

/// The type names CEL's standard environment resolves (`type(args.id) == string`): read by
/// an expression as identifiers, they are not variables.
const TYPE_NAMES: [&str; 10] = [
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
];

/// A compiled CEL expression with the text it was written as.
pub struct Condition {
    source: String,
    program: Program,
    /// The native form, when the expression has one: it answers without the interpreter.
    native: Option<Native>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

/// Why a condition could not be evaluated to a boolean or a number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionError {
    /// The expression did not parse.
    #[error("{0}")]
    Syntax(String),
    /// Evaluation failed (missing field, wrong type).
    #[error("`{expr}` could not be evaluated: {message}")]
    Evaluation {
        /// The expression.
        expr: String,
        /// What went wrong, in CEL's words.
        message: String,
    },
    /// The expression gave a value of the wrong type.
    #[error("`{expr}` gave {got}, not {want}")]
    Type {
        /// The expression.
        expr: String,
        /// What it gave.
        got: String,
        /// What was needed.
        want: &'static str,
    },
}

/// The largest budget amount (and budget `max`): 2^53, past which `f64` skips integers.
pub const MAX_AMOUNT: f64 = 9_007_199_254_740_992.0;

/// [`MAX_AMOUNT`] as an integer.
const MAX_AMOUNT_INT: i64 = 9_007_199_254_740_992;

/// The variables an expression sees (`args` now; `result` and `probe` later).
///
/// Converted for the interpreter at most once per call, and only if a condition needs it.
pub struct Bindings<'a> {
    args: &'a Map<String, Value>,
    ctx: OnceLock<Context<'static, 'static>>,
}

impl fmt::Debug for Bindings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bindings")
    }
}

impl<'a> Bindings<'a> {
    /// Binds the call's arguments as `args`.
    pub fn for_args(args: &'a Map<String, Value>) -> Self {
        Self {
            args,
            ctx: OnceLock::new(),
        }
    }

    /// The interpreter's context, converted on first use.
    fn context(&self) -> &Context<'static, 'static> {
        self.ctx.get_or_init(|| {
            let args = cel::to_value(self.args).unwrap_or(CelValue::Null);
            let mut ctx = Context::with_env(env().clone());
            ctx.add_variable_from_value("args", args);
            ctx
        })
    }
}

impl Condition {
    /// Compiles an expression; the error carries CEL's own message with a column.
    pub fn compile(source: &str) -> Result<Self, ConditionError> {
        let program = env()
            .compile(source)
            .map_err(|e| ConditionError::Syntax(clean_parse_error(&e.to_string())))?;
        let native = Native::compile(program.expression());
        Ok(Self {
            source: source.to_owned(),
            program,
            native,
        })
    }

    /// Whether the expression is evaluated natively (the common shapes) rather than by the interpreter.
    pub fn is_native(&self) -> bool {
        self.native.is_some()
    }

    /// The native form's answer, when it has one (never an error: those come from CEL).
    fn native<'b>(&'b self, b: &'b Bindings<'_>) -> Option<Val<'b>> {
        self.native.as_ref()?.eval(b.args)
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables the expression reads (`args`, `result`, ...), sorted, not counting those
    /// a macro binds itself (`x` in `args.items.all(x, x > 0)`) or CEL's type names (`int`).
    pub fn variables(&self) -> Vec<String> {
        let mut bound = std::collections::HashSet::new();
        bound_variables(self.program.expression(), &mut bound);
        let mut read: Vec<String> = self
            .program
            .references()
            .variables()
            .into_iter()
            .filter(|v| !bound.contains(*v) && !TYPE_NAMES.contains(v))
            .map(str::to_owned)
            .collect();
        read.sort();
        read
    }

    /// The names of `args.FIELD` the expression reads, for checking against a tool's schema.
    pub fn arg_fields(&self) -> Vec<String> {
        arg_fields(&self.source)
    }

    fn run(&self, b: &Bindings<'_>) -> Result<CelValue, ConditionError> {
        self.program
            .execute(b.context())
            .map_err(|e| ConditionError::Evaluation {
                expr: self.source.clone(),
                message: describe_execution_error(&e),
            })
    }

    /// Evaluates to a boolean; anything else is an error (and so a refusal).
    pub fn holds(&self, b: &Bindings<'_>) -> Result<bool, ConditionError> {
        if let Some(Val::Bool(v)) = self.native(b) {
            return Ok(v);
        }
        self.holds_by_interpreter(b)
    }

    fn holds_by_interpreter(&self, b: &Bindings<'_>) -> Result<bool, ConditionError> {
        match self.run(b)? {
            CelValue::Bool(v) => Ok(v),
            other => Err(ConditionError::Type {
                expr: self.source.clone(),
                got: type_name(&other),
                want: "a boolean",
            }),
        }
    }

    /// Evaluates to a budget amount: a number from 0 to [`MAX_AMOUNT`], which `f64` holds
    /// exactly when it is an integer (a negative amount would give budget back, and a larger
    /// integer would be charged as another one).
    pub fn number(&self, b: &Bindings<'_>) -> Result<f64, ConditionError> {
        match self.native(b) {
            Some(Val::Int(v)) => return self.amount(i128::from(v), v as f64),
            Some(Val::UInt(v)) => return self.amount(i128::from(v), v as f64),
            Some(Val::Double(v)) if v.is_finite() => return self.amount(0, v),
            _ => {}
        }
        self.number_by_interpreter(b)
    }

    /// `value` if it is a budget amount; `int` is the exact value of an integer (0 for a double).
    fn amount(&self, int: i128, value: f64) -> Result<f64, ConditionError> {
        // exactly representable: the integer itself, not its rounding, is within range
        let exact = i128::from(MAX_AMOUNT_INT);
        if (0.0..=MAX_AMOUNT).contains(&value) && (0..=exact).contains(&int) {
            return Ok(value);
        }
        Err(ConditionError::Type {
            expr: self.source.clone(),
            got: if int == 0 {
                value.to_string()
            } else {
                int.to_string()
            },
            want: "a budget amount from 0 to 2^53",
        })
    }

    fn number_by_interpreter(&self, b: &Bindings<'_>) -> Result<f64, ConditionError> {
        match self.run(b)? {
            CelValue::Int(v) => self.amount(i128::from(v), v as f64),
            CelValue::UInt(v) => self.amount(i128::from(v), v as f64),
            CelValue::Float(v) if v.is_finite() => self.amount(0, v),
            other => Err(ConditionError::Type {
                expr: self.source.clone(),
                got: type_name(&other),
                want: "a finite number",
            }),
        }
    }
}

/// The names the comprehensions of an expression bind (the macros' loop variables).
fn bound_variables<'e>(e: &'e IdedExpr, bound: &mut std::collections::HashSet<&'e str>) {
    match &e.expr {
        Expr::Comprehension(c) => {
            bound.insert(c.iter_var.as_str());
            if let Some(v) = &c.iter_var2 {
                bound.insert(v.as_str());
            }
            bound.insert(c.accu_var.as_str());
            for part in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                bound_variables(part, bound);
            }
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                bound_variables(target, bound);
            }
            for arg in &call.args {
                bound_variables(arg, bound);
            }
        }
        Expr::List(list) => {
            for element in &list.elements {
                bound_variables(element, bound);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(m) = &entry.expr {
                    bound_variables(&m.key, bound);
                    bound_variables(&m.value, bound);
                }
            }
        }
        Expr::Select(select) => bound_variables(&select.operand, bound),
        _ => {}
    }
}

fn type_name(v: &CelValue) -> String {
    match v {
        CelValue::Null => "null".to_owned(),
        CelValue::Bool(_) => "a boolean".to_owned(),
        CelValue::Int(_) | CelValue::UInt(_) => "an integer".to_owned(),
        CelValue::Float(_) => "a number".to_owned(),
        CelValue::String(_) => "a string".to_owned(),
        CelValue::List(_) => "a list".to_owned(),
        CelValue::Map(_) => "a map".to_owned(),
        _ => "a value of another type".to_owned(),
    }
}

fn describe_execution_error(e: &cel::ExecutionError) -> String {
    let text = format!("{e:?}");
    if let Some(rest) = text.strip_prefix("NoSuchKey(") {
        let key = rest.trim_end_matches(')').trim_matches('"');
        return format!("argument `{key}` is missing");
    }
    if text.starts_with("NoSuchOverload") {
        return "an argument has the wrong type".to_owned();
    }
    e.to_string()
}

fn clean_parse_error(text: &str) -> String {
    text.trim_start_matches("ERROR: ").replace('\n', " ")
}

/// The `args.FIELD` names mentioned in an expression (a scan of the text, outside string literals).
pub fn arg_fields(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = source.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let c = bytes.get(i).copied().unwrap_or(0);
        if let Some(q) = quote {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == b'\'' || c == b'"' {
            quote = Some(c);
            i += 1;
            continue;
        }
        let boundary = i == 0
            || !bytes
                .get(i - 1)
                .is_some_and(|p| p.is_ascii_alphanumeric() || *p == b'_' || *p == b'.');
        if boundary && source.get(i..).is_some_and(|s| s.starts_with("args.")) {
            let start = i + 5;
            let mut end = start;
            while bytes
                .get(end)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
            {
                end += 1;
            }
            if let Some(name) = source.get(start..end)
                && !name.is_empty()
                && !out.iter().any(|n| n == name)
            {
                out.push(name.to_owned());
            }
            i = end;
            continue;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Bindings<'static> {
        match v {
            // leaked: a test's few maps outlive nothing that matters
            Value::Object(map) => Bindings::for_args(Box::leak(Box::new(map))),
            other => panic!("test arguments must be an object, not {other}"),
        }
    }

    #[test]
    fn type_names_are_not_variables_and_resolve_at_run_time() {
        for name in TYPE_NAMES {
            let c = Condition::compile(&format!("type(args.amount) == {name}")).unwrap();
            assert_eq!(c.variables(), ["args"], "{name}");
            // the environment knows it: no "undeclared reference"
            let answer = c.holds(&args(json!({"amount": 4})));
            assert!(answer.is_ok(), "{name}: {answer:?}");
        }
        // one the environment does not know is still read, and refused at run time
        let c = Condition::compile("type(args.amount) == timestamp").unwrap();
        assert_eq!(c.variables(), ["args", "timestamp"]);
        assert!(c.holds(&args(json!({"amount": 4}))).is_err());
    }

    #[test]
    fn integer_and_decimal_amounts_compare_with_integer_limits() {
        let c = Condition::compile("args.amount > 0 && args.amount <= 500").unwrap();
        assert!(c.holds(&args(json!({"amount": 40}))).unwrap());
        assert!(c.holds(&args(json!({"amount": 40.5}))).unwrap());
        assert!(!c.holds(&args(json!({"amount": 500.01}))).unwrap());
        assert!(!c.holds(&args(json!({"amount": -1}))).unwrap());
    }

    #[test]
    fn missing_argument_is_an_error_not_false() {
        let c = Condition::compile("args.amount <= 500").unwrap();
        let err = c.holds(&args(json!({}))).unwrap_err();
        assert!(
            err.to_string().contains("argument `amount` is missing"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_is_an_error() {
        let c = Condition::compile("args.amount <= 500").unwrap();
        let err = c.holds(&args(json!({"amount": "500"}))).unwrap_err();
        assert!(err.to_string().contains("wrong type"), "{err}");
    }

    #[test]
    fn non_boolean_condition_is_an_error() {
        let c = Condition::compile("args.amount").unwrap();
        assert!(matches!(
            c.holds(&args(json!({"amount": 1}))),
            Err(ConditionError::Type { .. })
        ));
    }

    #[test]
    fn syntax_error_reports_a_column() {
        let err = Condition::compile("args.amount >").unwrap_err();
        assert!(err.to_string().contains("1:14"), "{err}");
    }

    #[test]
    fn finds_argument_fields_outside_strings() {
        assert_eq!(
            arg_fields("args.amount > 0 && args.to.endsWith('args.fake') && size(args.x_y) > 1"),
            vec!["amount", "to", "x_y"]
        );
        assert!(arg_fields("myargs.amount > 1").is_empty());
    }
}
