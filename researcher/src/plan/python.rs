//! The verdict of CPython on a plan: what its parser refuses, and what its compiler refuses
//! when the node loads the module (its symbol table's rules, in `scopes`, and the context
//! rules, here), for the version a node runs.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;

use rustpython_parser::ast::{self, Constant, Expr, ExprContext, Pattern, Ranged, Stmt};
use rustpython_parser::source_code::LinearLocator;
use rustpython_parser::{parse, Mode};

use super::scopes::{Kind, Refusal, Scopes};
use super::SyntaxError;

/// The Python a plan is checked for. Fed-BioMed v4 nodes run 3.10, the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Python {
    /// 3.10.
    #[default]
    V3_10,
    /// 3.11: adds `except*` and starred expressions in subscripts and `*args` annotations.
    V3_11,
}

impl FromStr for Python {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "3.10" => Ok(Python::V3_10),
            "3.11" => Ok(Python::V3_11),
            _ => Err(format!(
                "plans are checked for Python 3.10 or 3.11, not {s}"
            )),
        }
    }
}

impl fmt::Display for Python {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Python::V3_10 => "3.10",
            Python::V3_11 => "3.11",
        })
    }
}

/// CPython's compiler gives up on a module nested deeper than about 3,000 levels
/// ("maximum recursion depth exceeded during compilation"); so does this check, which also
/// keeps its own recursion bounded.
const MAX_DEPTH: usize = 2_900;

/// CPython's tokenizer takes 99 levels of indentation, no more.
const MAX_INDENT: usize = 100;
/// How deep brackets nest before CPython's tokenizer refuses them (`MAXLEVEL`).
const MAX_NESTING: usize = 200;

/// The parser builds deep nesting without recursion, but dropping it recurses: a stack
/// large enough for the deepest plan within [`super::MAX_PLAN_BYTES`].
const STACK: usize = 1 << 30;

/// Checks `source`, known as `name`, as CPython `python` would compile it.
pub(super) fn check(name: &str, source: &str, python: Python) -> Result<(), SyntaxError> {
    std::thread::scope(|scope| {
        let checking = std::thread::Builder::new()
            .name("plan check".into())
            .stack_size(STACK)
            .spawn_scoped(scope, || verdict(name, source, python));
        match checking.map(|thread| thread.join()) {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            // Without a thread of its own, a check on this thread's stack beats none.
            Err(_) => verdict(name, source, python),
        }
    })
}

fn verdict(name: &str, source: &str, python: Python) -> Result<(), SyntaxError> {
    let error = |offset: usize, message: String| {
        let (line, column) = position(source, offset);
        SyntaxError {
            name: name.to_owned(),
            line,
            column,
            message,
        }
    };
    let module = match parse(source, Mode::Module, name) {
        Ok(ast::Mod::Module(module)) => module,
        Ok(_) => return Ok(()),
        Err(parse_error) => {
            use rustpython_parser::{lexer::LexicalErrorType, ParseErrorType};
            if matches!(
                parse_error.error,
                ParseErrorType::Eof | ParseErrorType::Lexical(LexicalErrorType::Eof)
            ) {
                if let Some((offset, bracket)) = unclosed(source) {
                    return Err(error(offset, format!("'{bracket}' was never closed")));
                }
            }
            let located = LinearLocator::new(source)
                .locate_error::<_, rustpython_parser::ParseErrorType>(parse_error);
            let (line, column) = located.python_location();
            return Err(SyntaxError {
                name: name.to_owned(),
                line,
                column,
                message: located.error.to_string(),
            });
        }
    };
    let mut rules = Rules::new(source, python);
    rules.body(&module.body);
    // Only blocks nested that deep can be indented that deep: the tokens are read again
    // only then.
    if rules.deepest_block > MAX_INDENT {
        if let Some(offset) = too_indented(source) {
            return Err(error(offset, "too many levels of indentation".into()));
        }
    }
    if let Some(offset) = too_nested(source) {
        return Err(error(offset, "too many nested parentheses".into()));
    }
    let [grammar, symbols, compiler] = std::mem::take(&mut rules.found);
    // CPython's passes in turn: the parser, the symbol table's walk and then its analysis
    // of every scope, the compiler.
    match grammar
        .or(symbols)
        .or_else(|| rules.scopes.analyse())
        .or(compiler)
    {
        Some((offset, message)) => Err(error(offset, message)),
        None => Ok(()),
    }
}

/// Where CPython's tokenizer gives up on indentation, 100 levels deep.
fn too_indented(source: &str) -> Option<usize> {
    use rustpython_parser::{lexer::lex, Tok};
    let mut level = 0;
    for token in lex(source, Mode::Module) {
        match token.ok()? {
            (Tok::Indent, range) => {
                level += 1;
                if level >= MAX_INDENT {
                    return Some(range.start().to_usize());
                }
            }
            (Tok::Dedent, _) => level -= 1,
            _ => {}
        }
    }
    None
}

/// Where CPython's tokenizer gives up on brackets, [`MAX_NESTING`] deep. Its brackets are
/// those outside strings and comments (an f-string is one token to it, up to 3.11). Read
/// byte by byte: the parser has accepted the source, so each string ends where it should.
fn too_nested(source: &str) -> Option<usize> {
    let bytes = source.as_bytes();
    let (mut at, mut level) = (0, 0);
    while at < bytes.len() {
        match bytes[at] {
            b'#' => {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
                continue;
            }
            quote @ (b'\'' | b'"') => {
                let triple = bytes[at..].starts_with(&[quote; 3]);
                let width = if triple { 3 } else { 1 };
                at += width;
                while at < bytes.len() {
                    match bytes[at] {
                        // Escapes a quote in raw strings too, as far as tokens go.
                        b'\\' => at += 2,
                        b if b == quote && (!triple || bytes[at..].starts_with(&[quote; 3])) => {
                            at += width;
                            break;
                        }
                        _ => at += 1,
                    }
                }
                continue;
            }
            b'(' | b'[' | b'{' if level == MAX_NESTING => return Some(at),
            b'(' | b'[' | b'{' => level += 1,
            b')' | b']' | b'}' => level = level.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    None
}

/// The last bracket left open, as CPython names it when the file ends inside it.
fn unclosed(source: &str) -> Option<(usize, char)> {
    use rustpython_parser::{lexer::lex, Tok};
    let mut open = Vec::new();
    for token in lex(source, Mode::Module) {
        let Ok((token, range)) = token else { break };
        match token {
            Tok::Lpar | Tok::Lsqb | Tok::Lbrace => open.push((range.start().to_usize(), token)),
            Tok::Rpar | Tok::Rsqb | Tok::Rbrace => {
                open.pop();
            }
            _ => {}
        }
    }
    let (offset, token) = open.pop()?;
    let bracket = match token {
        Tok::Lpar => '(',
        Tok::Lsqb => '[',
        _ => '{',
    };
    Some((offset, bracket))
}

/// 1-based line and column (in characters) of a byte offset.
fn position(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = 1 + before.matches('\n').count();
    (line, 1 + before[line_start..].chars().count())
}

/// Where the walk is: what CPython's compiler asks of the code around a statement.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Module,
    Class,
    Function { is_async: bool },
    Lambda,
}

/// Which pass of CPython finds an error: the first pass with one decides.
#[derive(Clone, Copy)]
enum Pass {
    Grammar = 0,
    Symbols = 1,
    Compiler = 2,
}

struct Rules<'a> {
    source: &'a str,
    python: Python,
    scope: Scope,
    in_loop: bool,
    in_except_star: bool,
    /// The comprehensions around, innermost last, up to the scope's edge.
    comprehensions: Vec<&'static str>,
    /// Whether `from __future__` may still come.
    future_allowed: bool,
    /// Whether the module's first statement has been seen (only it can be a docstring).
    begun: bool,
    scopes: Scopes,
    /// Inside a comprehension's iterable (lambdas in it included), where `:=` is refused.
    in_iterable: usize,
    /// Walking a comprehension's `for` target.
    in_iteration_target: bool,
    depth: usize,
    /// Bodies around the walk (the module's counts), and the most seen.
    blocks: usize,
    deepest_block: usize,
    found: [Option<(usize, String)>; 3],
}

impl<'a> Rules<'a> {
    fn new(source: &'a str, python: Python) -> Self {
        Rules {
            source,
            python,
            scope: Scope::Module,
            in_loop: false,
            in_except_star: false,
            comprehensions: Vec::new(),
            future_allowed: true,
            begun: false,
            scopes: Scopes::new(),
            in_iterable: 0,
            in_iteration_target: false,
            depth: 0,
            blocks: 0,
            deepest_block: 0,
            found: [None, None, None],
        }
    }

    /// Keeps the first error of each pass.
    fn refuse(&mut self, pass: Pass, at: &(impl Ranged + ?Sized), message: impl Into<String>) {
        let slot = &mut self.found[pass as usize];
        if slot.is_none() {
            *slot = Some((at.start().to_usize(), message.into()));
        }
    }

    /// Keeps the first error of the symbol table's walk.
    fn symbols(&mut self, checked: Result<(), Refusal>) {
        if let Err(refusal) = checked {
            self.found[Pass::Symbols as usize].get_or_insert(refusal);
        }
    }

    fn too_deep(&mut self, at: &(impl Ranged + ?Sized)) -> bool {
        if self.depth < MAX_DEPTH {
            return false;
        }
        self.refuse(
            Pass::Grammar,
            at,
            "too deeply nested: maximum recursion depth exceeded during compilation",
        );
        true
    }

    fn in_function(&self) -> bool {
        matches!(self.scope, Scope::Function { .. } | Scope::Lambda)
    }

    fn in_async_function(&self) -> bool {
        self.scope == (Scope::Function { is_async: true })
    }

    /// Walks `f` in a new scope: loops and comprehensions do not reach into it.
    fn scoped(&mut self, scope: Scope, f: impl FnOnce(&mut Self)) {
        let outer = (self.scope, self.in_loop, self.in_except_star);
        let comprehensions = std::mem::take(&mut self.comprehensions);
        (self.scope, self.in_loop, self.in_except_star) = (scope, false, false);
        self.scopes.enter(match scope {
            Scope::Module => Kind::Module,
            Scope::Class => Kind::Class,
            Scope::Function { .. } | Scope::Lambda => Kind::Function,
        });
        f(self);
        self.scopes.exit();
        (self.scope, self.in_loop, self.in_except_star) = outer;
        self.comprehensions = comprehensions;
    }

    fn body(&mut self, body: &[Stmt]) {
        self.blocks += 1;
        self.deepest_block = self.deepest_block.max(self.blocks);
        for stmt in body {
            self.stmt(stmt);
        }
        self.blocks -= 1;
    }

    fn stmt(&mut self, stmt: &Stmt) {
        if self.too_deep(stmt) {
            return;
        }
        self.depth += 1;
        self.stmt_inner(stmt);
        self.depth -= 1;
        let docstring = self.depth == 0
            && !std::mem::replace(&mut self.begun, true)
            && matches!(stmt, Stmt::Expr(e) if matches!(&*e.value, Expr::Constant(c) if matches!(c.value, Constant::Str(_))));
        let future =
            matches!(stmt, Stmt::ImportFrom(i) if i.module.as_deref() == Some("__future__"));
        if !(docstring && self.future_allowed || future) {
            self.future_allowed = false;
        }
    }

    fn stmt_inner(&mut self, stmt: &Stmt) {
        match stmt {
            Stmt::FunctionDef(ast::StmtFunctionDef {
                name,
                args,
                body,
                decorator_list,
                returns,
                type_params,
                ..
            })
            | Stmt::AsyncFunctionDef(ast::StmtAsyncFunctionDef {
                name,
                args,
                body,
                decorator_list,
                returns,
                type_params,
                ..
            }) => {
                self.new_syntax(stmt, type_params.is_empty());
                self.forbidden_name(stmt, name);
                self.exprs(decorator_list);
                self.arguments(args);
                self.opt_expr(returns.as_deref());
                self.scopes.assigned(name);
                let is_async = matches!(stmt, Stmt::AsyncFunctionDef(_));
                self.scoped(Scope::Function { is_async }, |rules| {
                    rules.parameters(args);
                    if is_async && has_yield(body) {
                        rules.async_generator_returns(body);
                    }
                    rules.body(body);
                });
            }
            Stmt::ClassDef(ast::StmtClassDef {
                name,
                bases,
                keywords,
                body,
                decorator_list,
                type_params,
                ..
            }) => {
                self.new_syntax(stmt, type_params.is_empty());
                self.forbidden_name(stmt, name);
                self.exprs(decorator_list);
                self.positional(bases);
                self.keywords(keywords);
                self.scopes.assigned(name);
                self.scoped(Scope::Class, |rules| rules.body(body));
            }
            Stmt::Return(ast::StmtReturn { value, .. }) => {
                if !self.in_function() {
                    self.refuse(Pass::Compiler, stmt, "'return' outside function");
                }
                self.jump(stmt);
                self.opt_expr(value.as_deref());
            }
            Stmt::Delete(ast::StmtDelete { targets, .. }) => {
                for target in targets {
                    self.deletion(target);
                    self.expr(target);
                }
            }
            Stmt::Assign(ast::StmtAssign { targets, value, .. }) => {
                for target in targets {
                    if !assignable(target) {
                        let name = expr_name(target);
                        self.refuse(Pass::Grammar, target, format!("cannot assign to {name} here. Maybe you meant '==' instead of '='?"));
                    }
                    self.target(target);
                }
                self.expr(value);
            }
            Stmt::TypeAlias(_) => self.new_syntax(stmt, false),
            Stmt::AugAssign(ast::StmtAugAssign { target, value, .. }) => {
                if !matches!(
                    **target,
                    Expr::Name(_) | Expr::Attribute(_) | Expr::Subscript(_)
                ) {
                    let name = expr_name(target);
                    self.refuse(
                        Pass::Grammar,
                        &**target,
                        format!("'{name}' is an illegal expression for augmented assignment"),
                    );
                }
                self.target(target);
                self.expr(value);
            }
            Stmt::AnnAssign(ast::StmtAnnAssign {
                target,
                annotation,
                value,
                simple,
                ..
            }) => {
                match &**target {
                    Expr::Name(ast::ExprName { id, .. }) => {
                        self.forbidden_name(&**target, id);
                        let at = stmt.start().to_usize();
                        let checked = self.scopes.annotated(id, at, *simple, value.is_some());
                        self.symbols(checked);
                    }
                    Expr::Attribute(_) | Expr::Subscript(_) => self.target(target),
                    Expr::Tuple(_) | Expr::List(_) => {
                        let name = expr_name(target);
                        self.refuse(
                            Pass::Grammar,
                            &**target,
                            format!("only single target (not {name}) can be annotated"),
                        );
                    }
                    other => self.refuse(Pass::Grammar, other, "illegal target for annotation"),
                }
                self.expr(annotation);
                self.opt_expr(value.as_deref());
            }
            Stmt::For(ast::StmtFor {
                target,
                iter,
                body,
                orelse,
                ..
            })
            | Stmt::AsyncFor(ast::StmtAsyncFor {
                target,
                iter,
                body,
                orelse,
                ..
            }) => {
                if matches!(stmt, Stmt::AsyncFor(_)) && !self.in_async_function() {
                    self.refuse(Pass::Compiler, stmt, "'async for' outside async function");
                }
                self.target(target);
                self.expr(iter);
                self.in_loop_body(body);
                self.body(orelse);
            }
            Stmt::While(ast::StmtWhile {
                test, body, orelse, ..
            }) => {
                self.expr(test);
                self.in_loop_body(body);
                self.body(orelse);
            }
            Stmt::If(ast::StmtIf {
                test, body, orelse, ..
            }) => {
                self.expr(test);
                self.body(body);
                self.body(orelse);
            }
            Stmt::With(ast::StmtWith { items, body, .. })
            | Stmt::AsyncWith(ast::StmtAsyncWith { items, body, .. }) => {
                if matches!(stmt, Stmt::AsyncWith(_)) && !self.in_async_function() {
                    self.refuse(Pass::Compiler, stmt, "'async with' outside async function");
                }
                for item in items {
                    self.expr(&item.context_expr);
                    if let Some(vars) = &item.optional_vars {
                        self.target(vars);
                    }
                }
                self.body(body);
            }
            Stmt::Match(ast::StmtMatch { subject, cases, .. }) => {
                self.expr(subject);
                // The `case` lines are a block of their own: a case's body is indented twice.
                self.blocks += 1;
                for (i, case) in cases.iter().enumerate() {
                    let last = i + 1 == cases.len();
                    if !last && case.guard.is_none() {
                        self.unreachable_after(&case.pattern);
                    }
                    let mut bound = BTreeSet::new();
                    self.pattern(&case.pattern, &mut bound);
                    self.opt_expr(case.guard.as_deref());
                    self.body(&case.body);
                }
                self.blocks -= 1;
            }
            Stmt::Raise(ast::StmtRaise { exc, cause, .. }) => {
                self.opt_expr(exc.as_deref());
                self.opt_expr(cause.as_deref());
            }
            Stmt::Try(ast::StmtTry {
                body,
                handlers,
                orelse,
                finalbody,
                ..
            })
            | Stmt::TryStar(ast::StmtTryStar {
                body,
                handlers,
                orelse,
                finalbody,
                ..
            }) => {
                let star = matches!(stmt, Stmt::TryStar(_));
                if let (true, Some(first)) = (star && self.python < Python::V3_11, handlers.first())
                {
                    self.refuse(
                        Pass::Grammar,
                        first,
                        format!(
                            "invalid syntax: `except*` is Python 3.11 (plans are checked for {})",
                            self.python
                        ),
                    );
                }
                self.body(body);
                for (i, ast::ExceptHandler::ExceptHandler(handler)) in handlers.iter().enumerate() {
                    if handler.type_.is_none() && i + 1 < handlers.len() {
                        self.refuse(Pass::Compiler, handler, "default 'except:' must be last");
                    }
                    self.opt_expr(handler.type_.as_deref());
                    if let Some(name) = &handler.name {
                        self.forbidden_name(handler, name);
                        self.scopes.assigned(name);
                    }
                    let outer = std::mem::replace(&mut self.in_except_star, star);
                    self.body(&handler.body);
                    self.in_except_star = outer;
                }
                self.body(orelse);
                self.body(finalbody);
            }
            Stmt::Assert(ast::StmtAssert { test, msg, .. }) => {
                self.expr(test);
                self.opt_expr(msg.as_deref());
            }
            Stmt::Import(ast::StmtImport { names, .. }) => self.aliases(stmt, names),
            Stmt::ImportFrom(ast::StmtImportFrom { module, names, .. }) => {
                if module.as_deref() == Some("__future__") {
                    self.future(stmt, names);
                }
                if names.iter().any(|a| a.name.as_str() == "*") && self.scope != Scope::Module {
                    self.refuse(Pass::Symbols, stmt, "import * only allowed at module level");
                }
                self.aliases(stmt, names);
            }
            Stmt::Global(ast::StmtGlobal { names, .. })
            | Stmt::Nonlocal(ast::StmtNonlocal { names, .. }) => {
                let global = matches!(stmt, Stmt::Global(_));
                for name in names {
                    self.forbidden_name(stmt, name);
                    let checked = self.scopes.declared(name, stmt.start().to_usize(), global);
                    self.symbols(checked);
                }
            }
            Stmt::Expr(ast::StmtExpr { value, .. }) => self.expr(value),
            Stmt::Break(_) | Stmt::Continue(_) => {
                let word = if matches!(stmt, Stmt::Break(_)) {
                    "'break' outside loop"
                } else {
                    "'continue' not properly in loop"
                };
                if !self.in_loop {
                    self.refuse(Pass::Compiler, stmt, word);
                }
                self.jump(stmt);
            }
            Stmt::Pass(_) => {}
        }
    }

    fn in_loop_body(&mut self, body: &[Stmt]) {
        let outer = std::mem::replace(&mut self.in_loop, true);
        let except_star = std::mem::replace(&mut self.in_except_star, false);
        self.body(body);
        (self.in_loop, self.in_except_star) = (outer, except_star);
    }

    /// `break`, `continue` and `return` may not leave an `except*` handler.
    fn jump(&mut self, stmt: &Stmt) {
        if self.in_except_star {
            self.refuse(
                Pass::Compiler,
                stmt,
                "'break', 'continue' and 'return' cannot appear in an except* block",
            );
        }
    }

    /// Syntax newer than 3.11 (PEP 695), refused for every version checked.
    fn new_syntax(&mut self, stmt: &Stmt, ok: bool) {
        if !ok {
            self.refuse(Pass::Grammar, stmt, format!("invalid syntax: type parameters and `type` statements are Python 3.12 (plans are checked for {})", self.python));
        }
    }

    fn future(&mut self, stmt: &Stmt, names: &[ast::Alias]) {
        if !self.future_allowed || self.scope != Scope::Module || self.depth > 1 {
            self.refuse(
                Pass::Compiler,
                stmt,
                "from __future__ imports must occur at the beginning of the file",
            );
        }
        const FEATURES: &[&str] = &[
            "nested_scopes",
            "generators",
            "division",
            "absolute_import",
            "with_statement",
            "print_function",
            "unicode_literals",
            "barry_as_FLUFL",
            "generator_stop",
            "annotations",
        ];
        for alias in names {
            match alias.name.as_str() {
                "braces" => self.refuse(Pass::Compiler, stmt, "not a chance"),
                feature if !FEATURES.contains(&feature) => self.refuse(
                    Pass::Compiler,
                    stmt,
                    format!("future feature {feature} is not defined"),
                ),
                _ => {}
            }
        }
    }

    fn aliases(&mut self, stmt: &Stmt, names: &[ast::Alias]) {
        for alias in names.iter().filter(|a| a.name.as_str() != "*") {
            let bound = match &alias.asname {
                Some(asname) => asname.as_str(),
                // `import a.b` binds `a`.
                None => alias.name.split('.').next().unwrap_or_default(),
            };
            self.forbidden_name(stmt, bound);
            self.scopes.imported(bound);
        }
    }

    fn forbidden_name(&mut self, at: &(impl Ranged + ?Sized), name: &str) {
        if name == "__debug__" {
            self.refuse(Pass::Compiler, at, "cannot assign to __debug__");
        }
    }

    /// An async generator may not return a value.
    fn async_generator_returns(&mut self, body: &[Stmt]) {
        for stmt in body {
            each_stmt(stmt, &mut |s| {
                if let Stmt::Return(ast::StmtReturn { value: Some(_), .. }) = s {
                    self.refuse(Pass::Compiler, s, "'return' with value in async generator");
                }
            });
        }
    }

    fn arguments(&mut self, args: &ast::Arguments) {
        let all = args
            .posonlyargs
            .iter()
            .chain(&args.args)
            .chain(&args.kwonlyargs);
        for arg in all {
            self.forbidden_name(&arg.def, &arg.def.arg);
            self.opt_expr(arg.def.annotation.as_deref());
            self.opt_expr(arg.default.as_deref());
        }
        for arg in args.vararg.iter().chain(&args.kwarg) {
            self.forbidden_name(&**arg, &arg.arg);
            if let Some(annotation) = &arg.annotation {
                if let Expr::Starred(starred) = &**annotation {
                    self.starred_is_3_11(starred);
                    self.expr(&starred.value);
                } else {
                    self.expr(annotation);
                }
            }
        }
    }

    /// The parameters, in the function's own scope.
    fn parameters(&mut self, args: &ast::Arguments) {
        let all = args
            .posonlyargs
            .iter()
            .chain(&args.args)
            .chain(&args.kwonlyargs)
            .map(|arg| &arg.def);
        for arg in all
            .chain(args.vararg.as_deref())
            .chain(args.kwarg.as_deref())
        {
            self.scopes.parameter(&arg.arg);
        }
    }

    fn starred_is_3_11(&mut self, starred: &ast::ExprStarred) {
        if self.python < Python::V3_11 {
            self.refuse(Pass::Grammar, starred, format!("invalid syntax: a starred expression here is Python 3.11 (plans are checked for {})", self.python));
        }
    }

    fn keywords(&mut self, keywords: &[ast::Keyword]) {
        for keyword in keywords {
            if let Some(name) = &keyword.arg {
                self.forbidden_name(keyword, name);
            }
            self.expr(&keyword.value);
        }
    }

    /// An assignment target: names stored, and starred only inside a list or tuple, once.
    fn target(&mut self, target: &Expr) {
        match target {
            Expr::Starred(_) => self.refuse(
                Pass::Compiler,
                target,
                "starred assignment target must be in a list or tuple",
            ),
            Expr::Tuple(ast::ExprTuple { elts, .. }) | Expr::List(ast::ExprList { elts, .. }) => {
                let starred = elts
                    .iter()
                    .filter(|e| matches!(e, Expr::Starred(_)))
                    .count();
                if starred > 1 {
                    self.refuse(
                        Pass::Compiler,
                        target,
                        "multiple starred expressions in assignment",
                    );
                }
                for elt in elts {
                    match elt {
                        Expr::Starred(ast::ExprStarred { value, .. }) => self.target(value),
                        other => self.target(other),
                    }
                }
                return;
            }
            Expr::Name(ast::ExprName { id, .. }) => self.forbidden_name(target, id),
            Expr::Attribute(ast::ExprAttribute { attr, .. }) => self.forbidden_name(target, attr),
            Expr::Subscript(_) => {}
            other => self.refuse(
                Pass::Grammar,
                other,
                format!("cannot assign to {}", expr_name(other)),
            ),
        }
        self.expr(target);
    }

    /// What `del` takes: names, attributes, subscripts, and lists or tuples of them.
    fn deletion(&mut self, target: &Expr) {
        match target {
            Expr::Name(ast::ExprName { id, .. }) if id.as_str() == "__debug__" => {
                self.refuse(Pass::Compiler, target, "cannot delete __debug__")
            }
            Expr::Name(_) | Expr::Attribute(_) | Expr::Subscript(_) => {}
            Expr::Tuple(ast::ExprTuple { elts, .. }) | Expr::List(ast::ExprList { elts, .. }) => {
                for elt in elts {
                    self.deletion(elt);
                }
            }
            other => self.refuse(
                Pass::Grammar,
                other,
                format!("cannot delete {}", expr_name(other)),
            ),
        }
    }

    fn exprs(&mut self, exprs: &[Expr]) {
        for expr in exprs {
            self.expr(expr);
        }
    }

    fn opt_expr(&mut self, expr: Option<&Expr>) {
        if let Some(expr) = expr {
            self.expr(expr);
        }
    }

    fn expr(&mut self, expr: &Expr) {
        if self.too_deep(expr) {
            return;
        }
        self.depth += 1;
        self.expr_inner(expr);
        self.depth -= 1;
    }

    fn expr_inner(&mut self, expr: &Expr) {
        match expr {
            Expr::BoolOp(ast::ExprBoolOp { values, .. }) => self.exprs(values),
            Expr::NamedExpr(ast::ExprNamedExpr { target, value, .. }) => {
                if self.in_iterable > 0 {
                    let message = "assignment expression cannot be used in a comprehension iterable expression";
                    self.refuse(Pass::Symbols, expr, message);
                }
                if let Expr::Name(ast::ExprName { id, .. }) = &**target {
                    self.forbidden_name(&**target, id);
                    let checked = self.scopes.walrus(id, expr.start().to_usize());
                    self.symbols(checked);
                }
                self.expr(value);
            }
            Expr::BinOp(ast::ExprBinOp { left, right, .. }) => {
                self.expr(left);
                self.expr(right);
            }
            Expr::UnaryOp(ast::ExprUnaryOp { operand, .. }) => self.expr(operand),
            Expr::Lambda(ast::ExprLambda { args, body, .. }) => {
                self.arguments(args);
                self.scoped(Scope::Lambda, |rules| {
                    rules.parameters(args);
                    rules.expr(body);
                });
            }
            Expr::IfExp(ast::ExprIfExp {
                test, body, orelse, ..
            }) => {
                self.expr(test);
                self.expr(body);
                self.expr(orelse);
            }
            Expr::Dict(ast::ExprDict { keys, values, .. }) => {
                keys.iter().for_each(|k| self.opt_expr(k.as_ref()));
                self.exprs(values);
            }
            Expr::Set(ast::ExprSet { elts, .. })
            | Expr::List(ast::ExprList { elts, .. })
            | Expr::Tuple(ast::ExprTuple { elts, .. }) => {
                for elt in elts {
                    match elt {
                        Expr::Starred(ast::ExprStarred { value, .. }) => self.expr(value),
                        other => self.expr(other),
                    }
                }
            }
            Expr::ListComp(ast::ExprListComp {
                elt, generators, ..
            }) => self.comprehension(expr, "list comprehension", generators, &[elt]),
            Expr::SetComp(ast::ExprSetComp {
                elt, generators, ..
            }) => self.comprehension(expr, "set comprehension", generators, &[elt]),
            Expr::DictComp(ast::ExprDictComp {
                key,
                value,
                generators,
                ..
            }) => self.comprehension(expr, "dict comprehension", generators, &[key, value]),
            Expr::GeneratorExp(ast::ExprGeneratorExp {
                elt, generators, ..
            }) => self.comprehension(expr, "generator expression", generators, &[elt]),
            Expr::Await(ast::ExprAwait { value, .. }) => {
                match (self.scope, self.comprehensions.last()) {
                    (Scope::Module | Scope::Class, None) => {
                        self.refuse(Pass::Compiler, expr, "'await' outside function")
                    }
                    (_, Some(&"generator expression")) => {}
                    (Scope::Function { is_async: true }, _) => {}
                    (_, Some(_)) => self.refuse(
                        Pass::Compiler,
                        expr,
                        "asynchronous comprehension outside of an asynchronous function",
                    ),
                    _ => self.refuse(Pass::Compiler, expr, "'await' outside async function"),
                }
                self.expr(value);
            }
            Expr::Yield(ast::ExprYield { value, .. }) => {
                self.yield_here(expr, "'yield' outside function");
                self.opt_expr(value.as_deref());
            }
            Expr::YieldFrom(ast::ExprYieldFrom { value, .. }) => {
                self.yield_here(expr, "'yield' outside function");
                if self.in_async_function() && self.comprehensions.is_empty() {
                    self.refuse(Pass::Compiler, expr, "'yield from' inside async function");
                }
                self.expr(value);
            }
            Expr::Compare(ast::ExprCompare {
                left, comparators, ..
            }) => {
                self.expr(left);
                self.exprs(comparators);
            }
            Expr::Call(ast::ExprCall {
                func,
                args,
                keywords,
                ..
            }) => {
                self.expr(func);
                let sole = args.len() + keywords.len() == 1;
                for arg in args {
                    if matches!(arg, Expr::GeneratorExp(_)) && !sole && !self.parenthesized(arg) {
                        self.refuse(
                            Pass::Grammar,
                            arg,
                            "Generator expression must be parenthesized",
                        );
                    }
                }
                self.positional(args);
                self.keywords(keywords);
            }
            Expr::FormattedValue(ast::ExprFormattedValue {
                value, format_spec, ..
            }) => {
                self.expr(value);
                self.opt_expr(format_spec.as_deref());
            }
            Expr::JoinedStr(ast::ExprJoinedStr { values, .. }) => self.exprs(values),
            Expr::Name(ast::ExprName { id, ctx, .. }) => match ctx {
                ExprContext::Load => self.scopes.used(id),
                _ if self.in_iteration_target => {
                    let checked = self.scopes.iterated(id, expr.start().to_usize());
                    self.symbols(checked);
                }
                _ => self.scopes.assigned(id),
            },
            Expr::Constant(_) => {}
            Expr::Attribute(ast::ExprAttribute { value, .. }) => self.expr(value),
            Expr::Subscript(ast::ExprSubscript { value, slice, .. }) => {
                self.expr(value);
                match &**slice {
                    Expr::Starred(starred) => {
                        self.starred_is_3_11(starred);
                        self.expr(&starred.value);
                    }
                    Expr::Tuple(ast::ExprTuple { elts, .. }) => {
                        for elt in elts {
                            if let Expr::Starred(starred) = elt {
                                self.starred_is_3_11(starred);
                            }
                        }
                        self.expr(slice);
                    }
                    other => self.expr(other),
                }
            }
            Expr::Starred(ast::ExprStarred { value, ctx, .. }) => {
                if *ctx == ExprContext::Load {
                    self.refuse(Pass::Compiler, expr, "can't use starred expression here");
                }
                self.expr(value);
            }
            Expr::Slice(ast::ExprSlice {
                lower, upper, step, ..
            }) => {
                self.opt_expr(lower.as_deref());
                self.opt_expr(upper.as_deref());
                self.opt_expr(step.as_deref());
            }
        }
    }

    /// Positional arguments of a call or class bases, where `*x` is allowed.
    fn positional(&mut self, args: &[Expr]) {
        for arg in args {
            match arg {
                Expr::Starred(ast::ExprStarred { value, .. }) => self.expr(value),
                other => self.expr(other),
            }
        }
    }

    fn yield_here(&mut self, expr: &Expr, outside: &str) {
        if let Some(kind) = self.comprehensions.last() {
            self.refuse(Pass::Symbols, expr, format!("'yield' inside {kind}"));
        } else if !self.in_function() {
            self.refuse(Pass::Compiler, expr, outside);
        }
    }

    /// A comprehension: its first iterable belongs to the scope around it, the rest to its
    /// own; an asynchronous one needs an async function unless it is a generator.
    fn comprehension(
        &mut self,
        expr: &Expr,
        kind: &'static str,
        generators: &[ast::Comprehension],
        elts: &[&Expr],
    ) {
        // A comprehension inside another's target has targets of its own, and the rest of
        // the outer target goes on after it.
        let outer_target = std::mem::replace(&mut self.in_iteration_target, false);
        if let Some(first) = generators.first() {
            self.iterable(&first.iter);
        }
        let is_async = generators.iter().any(|g| g.is_async);
        if is_async && kind != "generator expression" && !self.in_async_function() {
            self.refuse(
                Pass::Compiler,
                expr,
                "asynchronous comprehension outside of an asynchronous function",
            );
        }
        self.comprehensions.push(kind);
        self.scopes.enter(Kind::Comprehension);
        for (i, generator) in generators.iter().enumerate() {
            self.in_iteration_target = true;
            self.target(&generator.target);
            self.in_iteration_target = false;
            if i > 0 {
                self.iterable(&generator.iter);
            }
            self.exprs(&generator.ifs);
        }
        for elt in elts {
            self.expr(elt);
        }
        self.scopes.exit();
        self.comprehensions.pop();
        self.in_iteration_target = outer_target;
    }

    fn iterable(&mut self, iter: &Expr) {
        self.in_iterable += 1;
        self.expr(iter);
        self.in_iterable -= 1;
    }

    /// Whether the source has parentheses of its own around `expr`.
    fn parenthesized(&self, expr: &Expr) -> bool {
        let range = expr.range();
        let (start, end) = (range.start().to_usize(), range.end().to_usize());
        self.source.as_bytes().get(start) == Some(&b'(')
            && self.source.as_bytes().get(end.wrapping_sub(1)) == Some(&b')')
    }

    /// An irrefutable case (a capture or `_`, without guard) that is not the last.
    fn unreachable_after(&mut self, pattern: &Pattern) {
        if let Some(message) = irrefutable(pattern) {
            self.refuse(Pass::Compiler, pattern, message);
        }
    }

    fn bind(&mut self, pattern: &Pattern, name: &ast::Identifier, bound: &mut BTreeSet<String>) {
        self.forbidden_name(pattern, name);
        self.scopes.assigned(name);
        if !bound.insert(name.to_string()) {
            self.refuse(
                Pass::Compiler,
                pattern,
                format!("multiple assignments to name '{name}' in pattern"),
            );
        }
    }

    /// Checks a pattern; `bound` gathers the names it captures.
    fn pattern(&mut self, pattern: &Pattern, bound: &mut BTreeSet<String>) {
        match pattern {
            Pattern::MatchValue(ast::PatternMatchValue { value, .. }) => self.expr(value),
            Pattern::MatchSingleton(_) => {}
            Pattern::MatchSequence(ast::PatternMatchSequence { patterns, .. }) => {
                let stars = patterns
                    .iter()
                    .filter(|p| matches!(p, Pattern::MatchStar(_)))
                    .count();
                if stars > 1 {
                    self.refuse(
                        Pass::Compiler,
                        pattern,
                        "multiple starred names in sequence pattern",
                    );
                }
                for p in patterns {
                    self.pattern(p, bound);
                }
            }
            Pattern::MatchMapping(ast::PatternMatchMapping {
                keys,
                patterns,
                rest,
                ..
            }) => {
                let mut seen = HashSet::new();
                for key in keys {
                    let text =
                        &self.source[key.range().start().to_usize()..key.range().end().to_usize()];
                    if !seen.insert(text) {
                        self.refuse(
                            Pass::Compiler,
                            key,
                            format!("mapping pattern checks duplicate key ({text})"),
                        );
                    }
                    self.expr(key);
                }
                for p in patterns {
                    self.pattern(p, bound);
                }
                if let Some(rest) = rest {
                    self.bind(pattern, rest, bound);
                }
            }
            Pattern::MatchClass(ast::PatternMatchClass {
                cls,
                patterns,
                kwd_attrs,
                kwd_patterns,
                ..
            }) => {
                self.expr(cls);
                let mut seen = HashSet::new();
                for attr in kwd_attrs {
                    if !seen.insert(attr.as_str()) {
                        self.refuse(
                            Pass::Compiler,
                            pattern,
                            format!("attribute name repeated in class pattern: {attr}"),
                        );
                    }
                }
                for p in patterns.iter().chain(kwd_patterns) {
                    self.pattern(p, bound);
                }
            }
            Pattern::MatchStar(ast::PatternMatchStar { name, .. }) => {
                if let Some(name) = name {
                    self.bind(pattern, name, bound);
                }
            }
            Pattern::MatchAs(ast::PatternMatchAs {
                pattern: inner,
                name,
                ..
            }) => {
                if let Some(inner) = inner {
                    self.pattern(inner, bound);
                }
                if let Some(name) = name {
                    self.bind(pattern, name, bound);
                }
            }
            Pattern::MatchOr(ast::PatternMatchOr { patterns, .. }) => {
                let mut first: Option<BTreeSet<String>> = None;
                for (i, alternative) in patterns.iter().enumerate() {
                    if i + 1 < patterns.len() {
                        self.unreachable_after(alternative);
                    }
                    let mut names = BTreeSet::new();
                    self.pattern(alternative, &mut names);
                    match &first {
                        None => first = Some(names),
                        Some(first) if *first != names => self.refuse(
                            Pass::Compiler,
                            alternative,
                            "alternative patterns bind different names",
                        ),
                        Some(_) => {}
                    }
                }
                for name in first.unwrap_or_default() {
                    if !bound.insert(name.clone()) {
                        self.refuse(
                            Pass::Compiler,
                            pattern,
                            format!("multiple assignments to name '{name}' in pattern"),
                        );
                    }
                }
            }
        }
    }
}

/// Why nothing after this pattern can match, when nothing can escape it.
fn irrefutable(pattern: &Pattern) -> Option<String> {
    match pattern {
        Pattern::MatchAs(ast::PatternMatchAs {
            pattern: None,
            name: Some(name),
            ..
        }) => Some(format!(
            "name capture '{name}' makes remaining patterns unreachable"
        )),
        Pattern::MatchAs(ast::PatternMatchAs {
            pattern: None,
            name: None,
            ..
        }) => Some("wildcard makes remaining patterns unreachable".into()),
        Pattern::MatchAs(ast::PatternMatchAs {
            pattern: Some(inner),
            ..
        }) => irrefutable(inner),
        Pattern::MatchOr(ast::PatternMatchOr { patterns, .. }) => {
            patterns.iter().find_map(irrefutable)
        }
        _ => None,
    }
}

/// What an `=` can store into.
fn assignable(target: &Expr) -> bool {
    match target {
        Expr::Name(_) | Expr::Attribute(_) | Expr::Subscript(_) => true,
        Expr::Starred(s) => assignable(&s.value),
        Expr::Tuple(ast::ExprTuple { elts, .. }) | Expr::List(ast::ExprList { elts, .. }) => {
            elts.iter().all(assignable)
        }
        _ => false,
    }
}

/// CPython's name for an expression that cannot be stored into or deleted.
fn expr_name(expr: &Expr) -> &'static str {
    match expr {
        Expr::Call(_) => "function call",
        Expr::Constant(c) => match c.value {
            Constant::None => "None",
            Constant::Bool(true) => "True",
            Constant::Bool(false) => "False",
            Constant::Ellipsis => "ellipsis",
            _ => "literal",
        },
        Expr::Starred(_) => "starred",
        Expr::Tuple(_) => "tuple",
        Expr::List(_) => "list",
        Expr::Compare(_) => "comparison",
        Expr::Lambda(_) => "lambda",
        Expr::IfExp(_) => "conditional expression",
        Expr::NamedExpr(_) => "named expression",
        Expr::Await(_) => "await expression",
        Expr::Yield(_) | Expr::YieldFrom(_) => "yield expression",
        Expr::Dict(_) => "dict literal",
        Expr::Set(_) => "set display",
        Expr::ListComp(_) => "list comprehension",
        Expr::SetComp(_) => "set comprehension",
        Expr::DictComp(_) => "dict comprehension",
        Expr::GeneratorExp(_) => "generator expression",
        Expr::JoinedStr(_) | Expr::FormattedValue(_) => "f-string expression",
        _ => "expression",
    }
}

/// Whether a function body yields (not counting nested functions, classes and lambdas).
fn has_yield(body: &[Stmt]) -> bool {
    let mut found = false;
    for stmt in body {
        each_stmt(stmt, &mut |s| {
            found |= stmt_yields(s);
        });
    }
    found
}

/// Calls `f` on `stmt` and every statement nested in it within the same function.
fn each_stmt(stmt: &Stmt, f: &mut impl FnMut(&Stmt)) {
    f(stmt);
    let mut nested = |body: &[Stmt]| body.iter().for_each(|s| each_stmt(s, f));
    match stmt {
        Stmt::For(s) => {
            nested(&s.body);
            nested(&s.orelse)
        }
        Stmt::AsyncFor(s) => {
            nested(&s.body);
            nested(&s.orelse)
        }
        Stmt::While(s) => {
            nested(&s.body);
            nested(&s.orelse)
        }
        Stmt::If(s) => {
            nested(&s.body);
            nested(&s.orelse)
        }
        Stmt::With(s) => nested(&s.body),
        Stmt::AsyncWith(s) => nested(&s.body),
        Stmt::Match(s) => s.cases.iter().for_each(|c| nested(&c.body)),
        Stmt::Try(ast::StmtTry {
            body,
            handlers,
            orelse,
            finalbody,
            ..
        })
        | Stmt::TryStar(ast::StmtTryStar {
            body,
            handlers,
            orelse,
            finalbody,
            ..
        }) => {
            nested(body);
            handlers
                .iter()
                .for_each(|ast::ExceptHandler::ExceptHandler(h)| nested(&h.body));
            nested(orelse);
            nested(finalbody);
        }
        _ => {}
    }
}

/// Whether a statement's own expressions hold a `yield` (outside nested scopes). A plain
/// text search would see `yield` in strings and comments: this looks at the expressions.
fn stmt_yields(stmt: &Stmt) -> bool {
    let exprs: Vec<&Expr> = match stmt {
        Stmt::Expr(s) => vec![&s.value],
        Stmt::Assign(s) => vec![&s.value],
        Stmt::AugAssign(s) => vec![&s.value],
        Stmt::AnnAssign(s) => s.value.as_deref().into_iter().collect(),
        Stmt::Return(s) => s.value.as_deref().into_iter().collect(),
        Stmt::If(s) => vec![&s.test],
        Stmt::While(s) => vec![&s.test],
        Stmt::For(s) => vec![&s.iter],
        Stmt::AsyncFor(s) => vec![&s.iter],
        Stmt::With(s) => s.items.iter().map(|i| &i.context_expr).collect(),
        Stmt::AsyncWith(s) => s.items.iter().map(|i| &i.context_expr).collect(),
        _ => Vec::new(),
    };
    exprs.into_iter().any(yields)
}

fn yields(expr: &Expr) -> bool {
    match expr {
        Expr::Yield(_) | Expr::YieldFrom(_) => true,
        Expr::Lambda(_)
        | Expr::ListComp(_)
        | Expr::SetComp(_)
        | Expr::DictComp(_)
        | Expr::GeneratorExp(_) => false,
        Expr::BinOp(e) => yields(&e.left) || yields(&e.right),
        Expr::UnaryOp(e) => yields(&e.operand),
        Expr::BoolOp(e) => e.values.iter().any(yields),
        Expr::Await(e) => yields(&e.value),
        Expr::Call(e) => {
            yields(&e.func)
                || e.args.iter().any(yields)
                || e.keywords.iter().any(|k| yields(&k.value))
        }
        Expr::Tuple(e) => e.elts.iter().any(yields),
        Expr::List(e) => e.elts.iter().any(yields),
        Expr::IfExp(e) => yields(&e.test) || yields(&e.body) || yields(&e.orelse),
        Expr::NamedExpr(e) => yields(&e.value),
        Expr::Starred(e) => yields(&e.value),
        Expr::Attribute(e) => yields(&e.value),
        Expr::Subscript(e) => yields(&e.value) || yields(&e.slice),
        Expr::Compare(e) => yields(&e.left) || e.comparators.iter().any(yields),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(source: &str, python: Python) -> Option<SyntaxError> {
        check("p.py", source, python).err()
    }

    #[test]
    fn what_python_3_11_added_is_refused_for_3_10() {
        for source in [
            "try:\n    pass\nexcept* ValueError:\n    pass\n",
            "a[*b] = 1\n",
            "x = t[int, *Ts]\n",
            "def f(*args: *Ts):\n    pass\n",
        ] {
            let error = refused(source, Python::V3_10).unwrap_or_else(|| panic!("{source:?}"));
            assert!(error.message.contains("Python 3.11"), "{error}");
            assert_eq!(refused(source, Python::V3_11), None, "{source:?}");
        }
    }

    #[test]
    fn python_3_12_syntax_is_refused_for_every_version() {
        for source in [
            "type X = int\n",
            "def f[T](x):\n    return x\n",
            "class C[T]:\n    pass\n",
        ] {
            for python in [Python::V3_10, Python::V3_11] {
                let error = refused(source, python).unwrap_or_else(|| panic!("{source:?}"));
                assert!(error.message.contains("3.12"), "{error}");
            }
        }
    }

    #[test]
    fn nesting_deeper_than_cpython_compiles_is_refused_without_overflowing() {
        // A unary chain nests one level a byte: a few MB of it is millions of levels.
        let deep = format!("x = {}a\n", "-".repeat(1_000_000));
        let error = refused(&deep, Python::V3_10).unwrap();
        assert!(error.message.contains("maximum recursion depth"), "{error}");
        let fine = format!("x = {}a\n", "-".repeat(1_000));
        assert_eq!(refused(&fine, Python::V3_10), None);
    }

    #[test]
    fn errors_in_a_match_statement_and_after_it_are_found() {
        let after = "match v:\n    case 1:\n        pass\nreturn 5\n";
        let error = refused(after, Python::V3_10).unwrap();
        assert_eq!(
            (error.line, error.message.as_str()),
            (4, "'return' outside function")
        );
        // CPython's symbol table speaks before its compiler, as here.
        let inside = "def f():\n    match v:\n        case [a, *b, *c]:\n            nonlocal z\n";
        let error = refused(inside, Python::V3_10).unwrap();
        assert_eq!(
            (error.line, error.message.as_str()),
            (4, "no binding for nonlocal 'z' found")
        );
        let pattern = "def f():\n    match v:\n        case [a, *b, *c]:\n            pass\n";
        let error = refused(pattern, Python::V3_10).unwrap();
        assert_eq!(
            (error.line, error.message.as_str()),
            (3, "multiple starred names in sequence pattern")
        );
    }

    #[test]
    fn versions_are_named_as_users_write_them() {
        assert_eq!("3.11".parse::<Python>(), Ok(Python::V3_11));
        assert_eq!(Python::default().to_string(), "3.10");
        assert_eq!(
            "3.12".parse::<Python>().unwrap_err(),
            "plans are checked for Python 3.10 or 3.11, not 3.12"
        );
    }
}
