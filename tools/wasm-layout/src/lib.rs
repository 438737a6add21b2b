//! Lays out the functions of a plugin so that the ones every probe run
//! calls sit together at the front of each core module.
//!
//! wasmtime compiles a module's functions into one text section in the
//! order of their indices, and the engine maps that code from its cache
//! file. The kernel maps file pages 64 KiB around each page a run touches
//! ("fault-around"), so a probe whose few hundred functions are spread over
//! a megabyte of code keeps most of that megabyte resident. Moving the
//! functions named in an order list to the front packs them into a few
//! pages.
//!
//! The same pass drops the names and DWARF sections of the component's
//! core modules (the plugins are built with their names so that the list
//! can name functions), so it replaces the linker's `--strip-all`.
//!
//! A name several functions share (copies of one generic instance) is
//! told apart by its position: the second copy in index order is
//! `name#1`, the third `name#2`; the map and the list use those keys.

use std::collections::HashMap;

use wasm_encoder::reencode::{self, Reencode};
use wasmparser::{Chunk, KnownCustom, Name, Parser, Payload};

/// Why a plugin could not be laid out.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("not a valid WebAssembly module or component: {0}")]
    Parse(#[from] wasmparser::BinaryReaderError),
    #[error("core module {module}: cannot re-encode it: {reason}")]
    Encode { module: usize, reason: String },
    #[error("the laid-out file does not validate ({0}); the input is left as it was")]
    Invalid(wasmparser::BinaryReaderError),
    #[error("a section at byte {0} runs past the end of the file")]
    Truncated(u64),
}

/// The function names to put first, in the order given.
#[derive(Debug, Default, Clone)]
pub struct OrderList {
    names: Vec<String>,
}

impl OrderList {
    /// One name per line, as the name section spells it; blank lines and
    /// lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Self {
        let names = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        Self { names }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// What happened to one core module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleReport {
    /// The core module's position among the file's core modules (what
    /// wasmtime calls `wasm[N]`).
    pub module: usize,
    pub defined_functions: u32,
    /// Functions moved to the front because the list names them.
    pub moved: u32,
}

/// One defined function's place before and after, for tools that trace
/// the laid-out file and must name what they saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub module: usize,
    pub new_index: u32,
    pub old_index: u32,
    pub name: Option<String>,
}

/// The laid-out file and what was done to it.
#[derive(Debug)]
pub struct Layout {
    pub bytes: Vec<u8>,
    pub modules: Vec<ModuleReport>,
    pub placements: Vec<Placement>,
    /// Names in the list that no module has: the list is stale for them.
    pub missing: Vec<String>,
}

/// Lays out every core module of `input` (a core module or a component)
/// by `order`, drops names and DWARF, and validates the result.
pub fn lay_out(input: &[u8], order: &OrderList) -> Result<Layout, LayoutError> {
    let mut out = Layout {
        bytes: Vec::new(),
        modules: Vec::new(),
        placements: Vec::new(),
        missing: Vec::new(),
    };
    // Checked first, so that what follows can trust the counts and indices
    // it reads.
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(input)?;
    let mut found = vec![false; order.names.len()];
    if Parser::is_core_wasm(input) {
        out.bytes = lay_out_module(input, 0, order, &mut found, &mut out)?;
    } else {
        out.bytes = lay_out_component(input, order, &mut found, &mut out)?;
    }
    out.missing = order
        .names
        .iter()
        .zip(&found)
        .filter(|(_, f)| !**f)
        .map(|(n, _)| n.clone())
        .collect();
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&out.bytes)
        .map_err(LayoutError::Invalid)?;
    Ok(out)
}

/// A component: its core modules are laid out, every other section is
/// copied as it is (they refer to core functions by export name, which
/// does not change).
fn lay_out_component(
    input: &[u8],
    order: &OrderList,
    found: &mut [bool],
    out: &mut Layout,
) -> Result<Vec<u8>, LayoutError> {
    let mut component = wasm_encoder::Component::new();
    // wasmtime numbers core modules in the order they appear, those of
    // nested components included; `module_index` follows it so that the
    // map names what a trace of the compiled plugin calls `wasm[N]`.
    let mut module_index = 0;
    let mut parser = Parser::new(0);
    let mut offset = 0usize;
    loop {
        let rest = input.get(offset..).unwrap_or_default();
        let (payload, consumed) = match parser.parse(rest, true)? {
            Chunk::NeedMoreData(_) => return Err(LayoutError::Truncated(offset as u64)),
            Chunk::Parsed { consumed, payload } => (payload, consumed),
        };
        offset += consumed;
        match payload {
            Payload::Version { .. } => {}
            Payload::End(_) => break,
            Payload::ModuleSection {
                unchecked_range, ..
            } => {
                let bytes = slice(input, unchecked_range.clone())?;
                let laid = lay_out_module(bytes, module_index, order, found, out)?;
                component.section(&wasm_encoder::RawSection {
                    id: wasm_encoder::ComponentSectionId::CoreModule as u8,
                    data: &laid,
                });
                module_index += 1;
                // The parser has stepped over the nested bytes already; the
                // input handed to it must do the same.
                offset += bytes.len();
            }
            // Copied as it is, names included: the code of the bundled
            // plugins is in the top-level modules (wit-component puts its
            // adapters there too).
            Payload::ComponentSection {
                unchecked_range, ..
            } => {
                let bytes = slice(input, unchecked_range.clone())?;
                module_index += count_core_modules(bytes)?;
                component.section(&wasm_encoder::RawSection {
                    id: wasm_encoder::ComponentSectionId::Component as u8,
                    data: bytes,
                });
                offset += bytes.len();
            }
            other => {
                if let Some((id, range)) = other.as_section() {
                    component.section(&wasm_encoder::RawSection {
                        id,
                        data: slice(input, range)?,
                    });
                }
            }
        }
    }
    Ok(component.finish())
}

fn count_core_modules(component: &[u8]) -> Result<usize, LayoutError> {
    let mut n = 0;
    for payload in Parser::new(0).parse_all(component) {
        if let Payload::ModuleSection { .. } = payload? {
            n += 1;
        }
    }
    Ok(n)
}

/// The bytes of a section the parser located (its offsets are `u64`).
fn slice(input: &[u8], range: std::ops::Range<u64>) -> Result<&[u8], LayoutError> {
    usize::try_from(range.start)
        .ok()
        .zip(usize::try_from(range.end).ok())
        .and_then(|(start, end)| input.get(start..end))
        .ok_or(LayoutError::Truncated(range.start))
}

/// What the pre-pass learns about a core module before re-encoding it.
struct Shape {
    imported: u32,
    defined: u32,
    names: HashMap<u32, String>,
}

fn shape(bytes: &[u8]) -> Result<Shape, LayoutError> {
    let mut shape = Shape {
        imported: 0,
        defined: 0,
        names: HashMap::new(),
    };
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    if matches!(
                        import?.ty,
                        wasmparser::TypeRef::Func(_) | wasmparser::TypeRef::FuncExact(_)
                    ) {
                        shape.imported += 1;
                    }
                }
            }
            Payload::FunctionSection(functions) => shape.defined = functions.count(),
            Payload::CustomSection(custom) => {
                if let KnownCustom::Name(names) = custom.as_known() {
                    for name in names {
                        // A malformed name section costs the layout, not
                        // the build: the names are only for the list.
                        let Ok(Name::Function(map)) = name else {
                            continue;
                        };
                        for naming in map.into_iter().flatten() {
                            shape.names.insert(naming.index, naming.name.to_owned());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // Copies of one name get keys of their own, in index order, so that
    // the same list moves the same functions in every build.
    let mut indices: Vec<u32> = shape.names.keys().copied().collect();
    indices.sort_unstable();
    let mut copies: HashMap<String, usize> = HashMap::new();
    for i in indices {
        if let Some(name) = shape.names.get_mut(&i) {
            let seen = copies.entry(name.clone()).or_default();
            if *seen > 0 {
                name.push_str(&format!("#{seen}"));
            }
            *seen += 1;
        }
    }
    Ok(shape)
}

fn lay_out_module(
    bytes: &[u8],
    module: usize,
    order: &OrderList,
    found: &mut [bool],
    out: &mut Layout,
) -> Result<Vec<u8>, LayoutError> {
    let shape = shape(bytes)?;
    // A name section may name indices that do not exist; those names
    // are ignored.
    let by_name: HashMap<&str, u32> = shape
        .names
        .iter()
        .filter_map(|(i, n)| {
            let d = i.checked_sub(shape.imported)?;
            (d < shape.defined).then_some((n.as_str(), d))
        })
        .collect();
    // The defined functions by new position: the listed ones first.
    let mut new_order: Vec<u32> = Vec::with_capacity(shape.defined as usize);
    let mut placed = vec![false; shape.defined as usize];
    for (k, name) in order.names.iter().enumerate() {
        if let Some(&d) = by_name.get(name.as_str()) {
            found[k] = true;
            if !placed[d as usize] {
                placed[d as usize] = true;
                new_order.push(d);
            }
        }
    }
    let moved = new_order.len() as u32;
    new_order.extend((0..shape.defined).filter(|d| !placed[*d as usize]));
    let mut new_of_old = vec![0; shape.defined as usize];
    for (new, old) in new_order.iter().enumerate() {
        new_of_old[*old as usize] = new as u32;
    }
    for (new, old) in new_order.iter().enumerate() {
        let old_index = old + shape.imported;
        out.placements.push(Placement {
            module,
            new_index: new as u32 + shape.imported,
            old_index,
            name: shape.names.get(&old_index).cloned(),
        });
    }
    out.modules.push(ModuleReport {
        module,
        defined_functions: shape.defined,
        moved,
    });

    let mut reorder = Reorder {
        imported: shape.imported,
        new_of_old,
        new_order,
    };
    let mut encoded = wasm_encoder::Module::new();
    reorder
        .parse_core_module(&mut encoded, Parser::new(0), bytes)
        .map_err(|e| LayoutError::Encode {
            module,
            reason: e.to_string(),
        })?;
    Ok(encoded.finish())
}

/// Re-encodes a core module with its defined functions permuted: every
/// function index (calls, `ref.func`, elements, exports, start) is mapped.
struct Reorder {
    imported: u32,
    /// Indexed by old defined index: the new defined index.
    new_of_old: Vec<u32>,
    /// Indexed by new defined index: the old one.
    new_order: Vec<u32>,
}

impl Reorder {
    fn map(&self, func: u32) -> u32 {
        match func.checked_sub(self.imported) {
            Some(d) => match self.new_of_old.get(d as usize) {
                Some(new) => new + self.imported,
                // Out of range: left for the validator to reject.
                None => func,
            },
            None => func,
        }
    }
}

impl Reencode for Reorder {
    type Error = std::convert::Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, reencode::Error> {
        Ok(self.map(func))
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), reencode::Error> {
        let types = section.into_iter().collect::<Result<Vec<u32>, _>>()?;
        for old in self.new_order.clone() {
            let ty = nth(&types, old)?;
            functions.function(self.type_index(ty)?);
        }
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error> {
        let bodies = section.into_iter().collect::<Result<Vec<_>, _>>()?;
        for old in self.new_order.clone() {
            let body = nth(&bodies, old)?;
            self.parse_function_body(code, body)?;
        }
        Ok(())
    }

    fn parse_custom_section(
        &mut self,
        module: &mut wasm_encoder::Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), reencode::Error> {
        if is_stripped(section.name()) {
            return Ok(());
        }
        reencode::utils::parse_custom_section(self, module, section)
    }
}

/// A defined function's entry in the function or code section (their
/// counts agree: the input was validated).
fn nth<T: Clone>(items: &[T], old: u32) -> Result<T, reencode::Error> {
    items
        .get(old as usize)
        .cloned()
        .ok_or(reencode::Error::InvalidCodeSectionSize)
}

/// The custom sections the shipped plugin leaves out, as the linker's
/// `--strip-all` did: names, DWARF and the linker's feature list. Code
/// metadata sections index functions and would be wrong after the move
/// (rustc emits none), so they go too.
fn is_stripped(name: &str) -> bool {
    name == "name"
        || name == "target_features"
        || name.starts_with(".debug")
        || name.starts_with("metadata.code.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmparser::{Operator, Parser, Payload};

    const MODULE: &str = r#"
        (module
          (import "host" "log" (func $log (param i32)))
          (func $a (result i32) i32.const 1)
          (func $b (result i32) call $a i32.const 10 i32.add)
          (func $c (export "c") (result i32) call $b)
          (func $init call $c call $log)
          (table 2 funcref)
          (elem (i32.const 0) func $a $c)
          (start $init)
        )"#;

    /// The callee of each defined function's first `call`, by position.
    fn first_calls(bytes: &[u8]) -> Vec<Option<u32>> {
        let mut calls = Vec::new();
        for payload in Parser::new(0).parse_all(bytes) {
            if let Payload::CodeSectionEntry(body) = payload.unwrap() {
                let mut ops = body.get_operators_reader().unwrap();
                let mut first = None;
                while !ops.eof() {
                    if let Operator::Call { function_index } = ops.read().unwrap() {
                        first = Some(function_index);
                        break;
                    }
                }
                calls.push(first);
            }
        }
        calls
    }

    fn index_of(layout: &Layout, module: usize, name: &str) -> u32 {
        layout
            .placements
            .iter()
            .find(|p| p.module == module && p.name.as_deref() == Some(name))
            .unwrap()
            .new_index
    }

    #[test]
    fn listed_functions_move_to_the_front_and_every_reference_follows() {
        let input = wat::parse_str(MODULE).unwrap();
        let layout = lay_out(&input, &OrderList::parse("# a comment\nc\n\na\n")).unwrap();
        // One import, then c and a as listed, then the rest in order.
        assert_eq!(index_of(&layout, 0, "c"), 1);
        assert_eq!(index_of(&layout, 0, "a"), 2);
        assert_eq!(index_of(&layout, 0, "b"), 3);
        assert_eq!(index_of(&layout, 0, "init"), 4);
        assert_eq!(layout.modules[0].moved, 2);
        assert!(layout.missing.is_empty());
        // c calls b, a calls nothing, b calls a, init calls c.
        assert_eq!(
            first_calls(&layout.bytes),
            [Some(3), None, Some(2), Some(1)]
        );

        let mut export = None;
        let mut start = None;
        let mut elements = Vec::new();
        let mut custom = Vec::new();
        for payload in Parser::new(0).parse_all(&layout.bytes) {
            match payload.unwrap() {
                Payload::ExportSection(s) => export = Some(s.into_iter().next().unwrap().unwrap()),
                Payload::StartSection { func, .. } => start = Some(func),
                Payload::ElementSection(s) => {
                    for e in s {
                        if let wasmparser::ElementItems::Functions(f) = e.unwrap().items {
                            elements.extend(f.into_iter().map(Result::unwrap));
                        }
                    }
                }
                Payload::CustomSection(c) => custom.push(c.name().to_owned()),
                _ => {}
            }
        }
        let export = export.unwrap();
        assert_eq!((export.name, export.index), ("c", 1));
        assert_eq!(start, Some(4));
        assert_eq!(elements, [2, 1]);
        assert!(custom.is_empty(), "names should be stripped: {custom:?}");
    }

    #[test]
    fn without_a_list_the_order_stays_and_names_and_dwarf_go() {
        let mut input = wat::parse_str(MODULE).unwrap();
        // A DWARF section as the linker leaves it, and one that stays.
        for name in [".debug_info", "producers"] {
            let body = [&[name.len() as u8][..], name.as_bytes(), b"\0"].concat();
            input.extend([0, body.len() as u8]);
            input.extend(body);
        }
        let layout = lay_out(&input, &OrderList::default()).unwrap();
        let order: Vec<_> = layout
            .placements
            .iter()
            .map(|p| (p.new_index, p.old_index))
            .collect();
        assert_eq!(order, [(1, 1), (2, 2), (3, 3), (4, 4)]);
        let custom: Vec<_> = Parser::new(0)
            .parse_all(&layout.bytes)
            .filter_map(|p| match p.unwrap() {
                Payload::CustomSection(c) => Some(c.name().to_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(custom, ["producers"]);
    }

    #[test]
    fn a_components_modules_are_laid_out_and_the_rest_is_copied() {
        let component = format!(
            r#"(component
                 (core module $m {module})
                 (core module $n (func $x) (func $y (export "y")))
                 (component $inner (core module (func $z)))
                 (core module $after (func $w (export "w")))
                 (import "f" (func $f (param "v" s32)))
                 (core func $log (canon lower (func $f)))
               )"#,
            module = &MODULE.trim()["(module".len()..MODULE.trim().len() - 1]
        );
        let input = wat::parse_str(&component).unwrap();
        let layout = lay_out(&input, &OrderList::parse("b\ny\nnowhere\n")).unwrap();
        assert_eq!(layout.modules.len(), 3);
        assert_eq!(index_of(&layout, 0, "b"), 1);
        assert_eq!(index_of(&layout, 1, "y"), 0);
        // The nested component's module is the third in wasmtime's
        // numbering (copied as it was), so the one after it is the fourth.
        assert_eq!(index_of(&layout, 3, "w"), 0);
        assert_eq!(layout.missing, ["nowhere"]);
        assert!(layout.bytes.len() < input.len());
        wasmparser::Validator::new()
            .validate_all(&layout.bytes)
            .unwrap();
    }

    /// A module of `count` empty functions named by `names`.
    fn named_module(count: u32, names: &[(u32, &str)]) -> Vec<u8> {
        let mut module = wasm_encoder::Module::new();
        let mut types = wasm_encoder::TypeSection::new();
        types.ty().function([], []);
        module.section(&types);
        let mut functions = wasm_encoder::FunctionSection::new();
        let mut code = wasm_encoder::CodeSection::new();
        for _ in 0..count {
            functions.function(0);
            let mut body = wasm_encoder::Function::new([]);
            body.instruction(&wasm_encoder::Instruction::End);
            code.function(&body);
        }
        module.section(&functions);
        module.section(&code);
        let mut map = wasm_encoder::NameMap::new();
        for (index, name) in names {
            map.append(*index, name);
        }
        let mut section = wasm_encoder::NameSection::new();
        section.functions(&map);
        module.section(&section);
        module.finish()
    }

    #[test]
    fn names_of_functions_that_do_not_exist_are_ignored() {
        let module = named_module(1, &[(0, "real"), (u32::MAX, "ghost")]);
        let layout = lay_out(&module, &OrderList::parse("ghost\nreal\n")).unwrap();
        assert_eq!(layout.missing, ["ghost"]);
        assert_eq!(layout.modules[0].moved, 1);
    }

    #[test]
    fn copies_of_one_name_are_told_apart_by_their_position() {
        let module = named_module(3, &[(0, "same"), (1, "other"), (2, "same")]);
        let layout = lay_out(&module, &OrderList::parse("same#1\n")).unwrap();
        let order: Vec<_> = layout
            .placements
            .iter()
            .map(|p| (p.old_index, p.name.as_deref().unwrap()))
            .collect();
        assert_eq!(order, [(2, "same#1"), (0, "same"), (1, "other")]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let err = lay_out(b"\0asm\x01\0\0\0\x01\xff", &OrderList::default()).unwrap_err();
        assert!(matches!(err, LayoutError::Parse(_)), "{err}");
        assert!(lay_out(b"not wasm", &OrderList::default()).is_err());
    }
}
