//! CPython's symbol table, as far as it refuses programs: what each scope binds, uses and
//! declares `global` or `nonlocal`, in the order met, and whether each `nonlocal` finds a
//! binding. Linear in the program: a `nonlocal` costs one lookup a function around it
//! (functions nest at most 99 deep: each is indented), an assignment expression in a
//! comprehension two lookups however deep the comprehensions nest.

use std::collections::HashMap;

/// An error: where (a byte offset) and CPython's words.
pub(super) type Refusal = (usize, String);

const USE: u8 = 1;
const LOCAL: u8 = 1 << 1;
const PARAM: u8 = 1 << 2;
const GLOBAL: u8 = 1 << 3;
const NONLOCAL: u8 = 1 << 4;
const ANNOT: u8 = 1 << 5;
const IMPORT: u8 = 1 << 6;
/// An iteration variable of a comprehension.
const COMP_ITER: u8 = 1 << 7;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Module,
    Class,
    /// A function or a lambda.
    Function,
    Comprehension,
}

struct Name {
    flags: u8,
    /// When the scope first met it: the analysis goes in that order, as CPython's.
    seen: usize,
    /// Its first `global` or `nonlocal` declaration, where errors about it point.
    declared_at: Option<usize>,
}

struct Block {
    kind: Kind,
    parent: Option<usize>,
    /// Where an assignment expression in it binds: itself, or for a comprehension the
    /// function, class or module around its comprehensions.
    owner: usize,
    names: HashMap<String, Name>,
    /// The names declared `nonlocal`: what the analysis checks.
    nonlocal: Vec<String>,
}

pub(super) struct Scopes {
    /// Every scope, in the order entered (CPython analyses them in that order).
    blocks: Vec<Block>,
    /// The scopes around the walk, innermost last.
    stack: Vec<usize>,
    /// Each name a comprehension on the stack iterates, with those comprehensions, innermost
    /// last: an assignment expression checks it at once, not scope by scope.
    iterating: HashMap<String, Vec<usize>>,
}

impl Scopes {
    pub(super) fn new() -> Self {
        let mut scopes = Scopes {
            blocks: Vec::new(),
            stack: Vec::new(),
            iterating: HashMap::new(),
        };
        scopes.enter(Kind::Module);
        scopes
    }

    pub(super) fn enter(&mut self, kind: Kind) {
        let parent = self.stack.last().copied();
        let index = self.blocks.len();
        let owner = match (kind, parent) {
            (Kind::Comprehension, Some(parent)) => self.blocks[parent].owner,
            _ => index,
        };
        self.blocks.push(Block {
            kind,
            parent,
            owner,
            names: HashMap::new(),
            nonlocal: Vec::new(),
        });
        self.stack.push(index);
    }

    pub(super) fn exit(&mut self) {
        let Some(block) = self.stack.pop() else {
            return;
        };
        for (name, entry) in &self.blocks[block].names {
            if entry.flags & COMP_ITER != 0 {
                if let Some(blocks) = self.iterating.get_mut(name) {
                    blocks.pop();
                }
            }
        }
    }

    fn current(&self) -> usize {
        *self.stack.last().expect("the module is never left")
    }

    fn flags(&self, block: usize, name: &str) -> u8 {
        self.blocks[block].names.get(name).map_or(0, |n| n.flags)
    }

    fn add(&mut self, block: usize, name: &str, flags: u8) -> u8 {
        let names = &mut self.blocks[block].names;
        if let Some(entry) = names.get_mut(name) {
            entry.flags |= flags;
            return entry.flags;
        }
        let seen = names.len();
        let entry = Name {
            flags,
            seen,
            declared_at: None,
        };
        names.insert(name.to_owned(), entry);
        flags
    }

    /// A name read.
    pub(super) fn used(&mut self, name: &str) {
        self.add(self.current(), name, USE);
    }

    /// A name assigned or deleted.
    pub(super) fn assigned(&mut self, name: &str) {
        self.add(self.current(), name, LOCAL);
    }

    /// A comprehension's `for` target, which may not be a name that an assignment
    /// expression in the comprehension binds.
    pub(super) fn iterated(&mut self, name: &str, at: usize) -> Result<(), Refusal> {
        let block = self.current();
        if self.flags(block, name) & COMP_ITER == 0 {
            self.iterating
                .entry(name.to_owned())
                .or_default()
                .push(block);
        }
        if self.add(block, name, LOCAL | COMP_ITER) & (GLOBAL | NONLOCAL) != 0 {
            return Err((
                at,
                format!(
                    "comprehension inner loop cannot rebind assignment expression target '{name}'"
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn imported(&mut self, name: &str) {
        self.add(self.current(), name, IMPORT);
    }

    /// A parameter (the parser has refused duplicates).
    pub(super) fn parameter(&mut self, name: &str) {
        self.add(self.current(), name, PARAM);
    }

    /// `x: T` (`simple`: the target is a bare name), with a value or not.
    pub(super) fn annotated(
        &mut self,
        name: &str,
        at: usize,
        simple: bool,
        value: bool,
    ) -> Result<(), Refusal> {
        let block = self.current();
        let flags = self.flags(block, name);
        if simple && flags & (GLOBAL | NONLOCAL) != 0 && self.blocks[block].kind != Kind::Module {
            let word = if flags & GLOBAL != 0 {
                "global"
            } else {
                "nonlocal"
            };
            return Err((at, format!("annotated name '{name}' can't be {word}")));
        }
        if simple {
            self.add(block, name, ANNOT | LOCAL);
        } else if value {
            self.add(block, name, LOCAL);
        }
        Ok(())
    }

    /// `global name` or `nonlocal name`, in the statement at `at`.
    pub(super) fn declared(&mut self, name: &str, at: usize, global: bool) -> Result<(), Refusal> {
        let block = self.current();
        let flags = self.flags(block, name);
        let word = if global { "global" } else { "nonlocal" };
        let message = if flags & PARAM != 0 {
            format!("name '{name}' is parameter and {word}")
        } else if flags & USE != 0 {
            format!("name '{name}' is used prior to {word} declaration")
        } else if flags & ANNOT != 0 {
            format!("annotated name '{name}' can't be {word}")
        } else if flags & LOCAL != 0 {
            format!("name '{name}' is assigned to before {word} declaration")
        } else {
            let flag = if global { GLOBAL } else { NONLOCAL };
            self.add(block, name, flag);
            let block = &mut self.blocks[block];
            if !global && flags & NONLOCAL == 0 {
                block.nonlocal.push(name.to_owned());
            }
            let entry = block.names.get_mut(name).expect("just added");
            entry.declared_at.get_or_insert(at);
            return Ok(());
        };
        Err((at, message))
    }

    /// The target of `name := ...` at `at`: inside comprehensions, it binds in the function
    /// or module around them.
    pub(super) fn walrus(&mut self, name: &str, at: usize) -> Result<(), Refusal> {
        let current = self.current();
        if self.blocks[current].kind != Kind::Comprehension {
            self.add(current, name, LOCAL);
            return Ok(());
        }
        // The comprehensions between here and the owner were entered after it.
        let owner = self.blocks[current].owner;
        let iterated = self.iterating.get(name).and_then(|blocks| blocks.last());
        if iterated.is_some_and(|&block| block > owner) {
            return Err((
                at,
                format!(
                    "assignment expression cannot rebind comprehension iteration variable '{name}'"
                ),
            ));
        }
        match self.blocks[owner].kind {
            Kind::Function => {
                let here = match self.flags(owner, name) & GLOBAL != 0 {
                    true => GLOBAL,
                    false => NONLOCAL,
                };
                self.add(current, name, here);
                self.add(owner, name, LOCAL);
            }
            Kind::Module => {
                self.add(current, name, GLOBAL);
                self.add(owner, name, GLOBAL);
            }
            Kind::Class => {
                return Err((
                    at,
                    "assignment expression within a comprehension cannot be used in a class body"
                        .into(),
                ));
            }
            Kind::Comprehension => unreachable!("a comprehension's owner is not one"),
        }
        Ok(())
    }

    /// What CPython finds once every scope is known: a `nonlocal` without a binding in a
    /// function around it, or a name both `nonlocal` and `global`. Scopes in the order
    /// entered, names in the order met.
    pub(super) fn analyse(&self) -> Option<Refusal> {
        for (index, block) in self.blocks.iter().enumerate() {
            let mut declared: Vec<(&str, &Name)> = block
                .nonlocal
                .iter()
                .map(|n| (n.as_str(), &block.names[n]))
                .collect();
            declared.sort_by_key(|(_, n)| n.seen);
            for (name, entry) in declared {
                let at = entry.declared_at.unwrap_or(0);
                if entry.flags & GLOBAL != 0 {
                    return Some((at, format!("name '{name}' is nonlocal and global")));
                }
                if block.kind == Kind::Module {
                    return Some((
                        at,
                        "nonlocal declaration not allowed at module level".into(),
                    ));
                }
                if !self.bound_around(index, name) {
                    return Some((at, format!("no binding for nonlocal '{name}' found")));
                }
            }
        }
        None
    }

    /// Whether a function around `block` binds `name` (classes bind only `__class__` for
    /// the functions in them).
    fn bound_around(&self, block: usize, name: &str) -> bool {
        let mut around = self.blocks[block].parent;
        while let Some(index) = around {
            let block = &self.blocks[index];
            let flags = self.flags(index, name);
            match block.kind {
                Kind::Module => return false,
                Kind::Class if name == "__class__" => return true,
                Kind::Class => {}
                Kind::Function | Kind::Comprehension => {
                    if flags & GLOBAL != 0 {
                        return false;
                    }
                    if flags & (LOCAL | PARAM | IMPORT) != 0 {
                        return true;
                    }
                }
            }
            around = block.parent;
        }
        false
    }
}
