//! CEL conditions on an action's arguments, compiled once and evaluated per call.

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
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
            let args = cel_object(self.args);
            let mut ctx = Context::with_env(env().clone());
            ctx.add_variable_from_value("args", args);
            ctx
        })
    }
}

/// A JSON value as CEL's JSON mapping has it: every number a `double`, except an integer
/// a double cannot hold exactly.
///
/// JSON does not tell `5` from `5.0`; bound as `uint`, `int` or `double` by how the number was
/// written, `args.amount * 2.0` worked for `5.5` and failed for `5`, and no literal worked for
/// both. As doubles (as cel-go and cel-cpp bind JSON), an expression works for every number
/// an agent sends or for none. An integer past 2^53 stays an exact `int` or `uint`: as a
/// double it would be another integer (a budget would charge a rounded amount); compared
/// it still answers, and arithmetic on it is an error, so a refusal.
fn cel_value(value: &Value) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => match exact_integer(n) {
            Some(Ok(i)) => CelValue::Int(i),
            Some(Err(u)) => CelValue::UInt(u),
            // without serde_json's `arbitrary_precision`, every number has an f64
            None => CelValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(cel_value).collect())),
        Value::Object(map) => cel_object(map),
    }
}

/// An integer that a double cannot hold exactly (past ±2^53): `Ok` as an `i64`, `Err` as a `u64` past it.
fn exact_integer(n: &serde_json::Number) -> Option<Result<i64, u64>> {
    if let Some(i) = n.as_i64() {
        return (i.unsigned_abs() > MAX_AMOUNT_INT.unsigned_abs()).then_some(Ok(i));
    }
    n.as_u64().map(Err)
}

/// A JSON object as a CEL map, its numbers doubles ([`cel_value`]).
fn cel_object(map: &Map<String, Value>) -> CelValue {
    let entries: std::collections::HashMap<String, CelValue> =
        map.iter().map(|(k, v)| (k.clone(), cel_value(v))).collect();
    CelValue::Map(entries.into())
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

/// A mistake `remit check` finds in an expression: it fails or misleads for every call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    pub help: String,
}

impl Condition {
    /// Arithmetic that fails for every number an agent sends: an argument (a number in the
    /// arguments is a double) with an integer literal (`args.amount * 2`), or `%` on an argument.
    pub fn mistakes(&self) -> Vec<Mistake> {
        let mut found = Vec::new();
        arithmetic_mistakes(self.program.expression(), &mut found);
        found
    }

    /// What the expression gives whatever the arguments, when that is not a boolean: a
    /// literal (`'abc'`, `5`), arithmetic or a `size()` at the top (as a `require` it refuses
    /// every call).
    pub fn never_boolean(&self) -> Option<&'static str> {
        match &self.program.expression().expr {
            Expr::Literal(LiteralValue::Boolean(_)) => None,
            Expr::Literal(LiteralValue::String(_)) => Some("a string"),
            Expr::Literal(LiteralValue::Bytes(_)) => Some("bytes"),
            Expr::Literal(LiteralValue::Null) => Some("null"),
            Expr::Literal(_) => Some("a number"),
            Expr::List(_) => Some("a list"),
            Expr::Map(_) => Some("a map"),
            Expr::Call(call) if is_arithmetic(&call.func_name) || call.func_name == "size" => {
                Some("a number")
            }
            _ => None,
        }
    }
}

fn is_arithmetic(op: &str) -> bool {
    use cel::common::ast::operators::{ADD, DIVIDE, MODULO, MULTIPLY, SUBSTRACT};
    [ADD, SUBSTRACT, MULTIPLY, DIVIDE, MODULO].contains(&op)
}

/// Whether `e` reads an argument as it is (`args.amount`, `args.lines[0].qty`), not through a
/// function that changes its type (`int(args.n)`, `size(args.items)`).
fn is_argument(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Ident(name) => name == "args",
        Expr::Select(select) => !select.test && is_argument(&select.operand),
        Expr::Call(call) if call.func_name == cel::common::ast::operators::INDEX => {
            call.args.first().is_some_and(is_argument)
        }
        _ => false,
    }
}

/// Whether `e` is an integer literal (`2`, `2u`, `-2`).
fn is_integer_literal(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Literal(LiteralValue::Int(_) | LiteralValue::UInt(_)) => true,
        Expr::Call(call) if call.func_name == cel::common::ast::operators::NEGATE => {
            call.args.first().is_some_and(is_integer_literal)
        }
        _ => false,
    }
}

fn arithmetic_mistakes(e: &IdedExpr, found: &mut Vec<Mistake>) {
    use cel::common::ast::operators::MODULO;
    match &e.expr {
        Expr::Call(call) => {
            if let [left, right] = call.args.as_slice()
                && is_arithmetic(&call.func_name)
            {
                let argument = [left, right].into_iter().find(|x| is_argument(x));
                if let Some(argument) = argument {
                    let name = argument_text(argument);
                    if call.func_name == MODULO {
                        found.push(Mistake {
                            message: format!(
                                "`%` on `{name}` fails for every call: the arguments' numbers are doubles"
                            ),
                            help: format!("convert it first: `int({name}) % ...`"),
                        });
                    } else if let Some(literal) =
                        [left, right].into_iter().find(|x| is_integer_literal(x))
                    {
                        let n = integer_text(literal);
                        found.push(Mistake {
                            message: format!(
                                "arithmetic on `{name}` with the integer `{n}` fails for every call: the arguments' numbers are doubles, and CEL does not mix doubles and integers"
                            ),
                            help: format!("write the literal as a double: `{n}.0`"),
                        });
                    }
                }
            }
            if let Some(target) = &call.target {
                arithmetic_mistakes(target, found);
            }
            for arg in &call.args {
                arithmetic_mistakes(arg, found);
            }
        }
        Expr::Comprehension(c) => {
            for part in [&c.iter_range, &c.loop_step, &c.result] {
                arithmetic_mistakes(part, found);
            }
        }
        Expr::List(list) => {
            for element in &list.elements {
                arithmetic_mistakes(element, found);
            }
        }
        Expr::Select(select) => arithmetic_mistakes(&select.operand, found),
        _ => {}
    }
}

/// `args.a.b` as written, for a message (`args...` when it holds an index).
fn argument_text(e: &IdedExpr) -> String {
    match &e.expr {
        Expr::Ident(name) => name.clone(),
        Expr::Select(select) => format!("{}.{}", argument_text(&select.operand), select.field),
        Expr::Call(call) => match call.args.first() {
            Some(list) => format!("{}[...]", argument_text(list)),
            None => "args".to_owned(),
        },
        _ => "args".to_owned(),
    }
}

/// An integer literal as written, without its `u`.
fn integer_text(e: &IdedExpr) -> String {
    match &e.expr {
        Expr::Literal(LiteralValue::Int(i)) => i.inner().to_string(),
        Expr::Literal(LiteralValue::UInt(u)) => u.inner().to_string(),
        Expr::Call(call) => format!(
            "-{}",
            call.args.first().map(integer_text).unwrap_or_default()
        ),
        _ => String::new(),
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
    fn arithmetic_gives_one_answer_however_the_agent_writes_a_number() {
        // numbers were bound as uint, int or double by how they were written: `* 2.0`
        // failed for `5`, `* 2` for `-1` or `5.5`
        let c = Condition::compile("args.amount * 2.0 <= 100.0 && args.fee + args.amount < 60.0")
            .unwrap();
        for (amount, fee, holds) in [
            (json!(5), json!(1), true),
            (json!(5.0), json!(0.5), true),
            (json!(-1), json!(3), true),
            (json!(49.5), json!(11), false),
            (json!(60), json!(0), false),
        ] {
            let answer = c.holds(&args(json!({"amount": amount, "fee": fee})));
            assert_eq!(answer, Ok(holds), "{amount} {fee}");
        }
        // an integer literal in arithmetic with an argument fails for every number alike
        let c = Condition::compile("args.amount * 2 <= 100").unwrap();
        for amount in [json!(5), json!(-1), json!(5.5)] {
            assert!(
                c.holds(&args(json!({"amount": amount}))).is_err(),
                "{amount}"
            );
        }
        // comparisons and equality across int, uint and double literals still hold,
        // natively and in the interpreter alike
        for expr in [
            "args.amount == 3",
            "args.amount == 3u",
            "args.amount == 3.0",
            "args.amount in [1, 2, 3]",
            "args.amount < 4u && args.amount > 2",
            "int(args.amount) % 3 == 0",
            "type(args.amount) == double",
        ] {
            let c = Condition::compile(expr).unwrap();
            let bound = args(json!({"amount": 3}));
            assert_eq!(c.holds(&bound), Ok(true), "{expr}");
            assert_eq!(c.holds_by_interpreter(&bound), Ok(true), "{expr}");
        }
        // an integer a double cannot hold exactly is not rounded into another one: arithmetic
        // on it is an error, comparisons answer
        let huge = args(json!({"amount": 9_007_199_254_740_993_u64}));
        let c = Condition::compile("args.amount * 2.0 > 0.0").unwrap();
        assert!(c.holds(&huge).is_err());
        let c = Condition::compile("args.amount > 9007199254740992").unwrap();
        assert_eq!(c.holds(&huge), Ok(true));
        assert_eq!(c.holds_by_interpreter(&huge), Ok(true));
        // nested numbers are doubles too
        let c = Condition::compile("args.lines.all(l, l.qty * 1.5 < 10.0)").unwrap();
        assert_eq!(
            c.holds(&args(json!({"lines": [{"qty": 2}, {"qty": 6.5}]}))),
            Ok(true)
        );
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
