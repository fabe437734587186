//! A small, position-keeping XML tree built with quick-xml.
//!
//! BPMN files are read in two passes: this module turns bytes into a tree of [`XmlElement`]s
//! that remember where each element and attribute starts (line, column), then `parse` maps the
//! tree onto the typed model. The tree is the only place that knows about XML syntax, limits and
//! entity handling.
//!
//! Safety rules: no DTD processing at all (a `<!DOCTYPE` with declarations is refused), only the
//! five predefined entities and character references are expanded, so there is no external
//! entity resolution and no entity-expansion bomb. Input size and nesting depth are bounded.

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use crate::diagnostics::Pos;

/// The namespaces Reglament gives meaning to.
pub const NS_BPMN: &str = "http://www.omg.org/spec/BPMN/20100524/MODEL";
pub const NS_ZEEBE: &str = "http://camunda.org/schema/zeebe/1.0";
pub const NS_REGLAMENT: &str = "urn:reglament:bpmn:1.0";
pub const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
const NS_DI_PREFIXES: [&str; 3] = [
    "http://www.omg.org/spec/BPMN/20100524/DI",
    "http://www.omg.org/spec/DD/20100524/DI",
    "http://www.omg.org/spec/DD/20100524/DC",
];

/// Limits that keep hostile or accidental input from exhausting memory or the stack.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted document, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted element nesting.
    pub max_depth: usize,
    /// Most elements accepted in one document.
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 32 * 1024 * 1024, max_depth: 256, max_elements: 2_000_000 }
    }
}

/// Which vocabulary an element or attribute belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ns {
    Bpmn,
    Zeebe,
    Reglament,
    Xsi,
    /// BPMN DI, DC and DI: diagram interchange, ignored by execution.
    Diagram,
    /// No namespace (plain attributes).
    None,
    /// Any other namespace, by URI.
    Other(String),
}

impl Ns {
    fn from_uri(uri: &str) -> Ns {
        match uri {
            "http://www.omg.org/spec/BPMN/20100524/MODEL" => Ns::Bpmn,
            "http://camunda.org/schema/zeebe/1.0" => Ns::Zeebe,
            "urn:reglament:bpmn:1.0" => Ns::Reglament,
            "http://www.w3.org/2001/XMLSchema-instance" => Ns::Xsi,
            u if NS_DI_PREFIXES.contains(&u) => Ns::Diagram,
            u => Ns::Other(u.to_string()),
        }
    }

    /// The prefix we use when naming an element of this namespace in a message.
    pub fn display_prefix(&self) -> &str {
        match self {
            Ns::Bpmn | Ns::None => "",
            Ns::Zeebe => "zeebe:",
            Ns::Reglament => "reglament:",
            Ns::Xsi => "xsi:",
            Ns::Diagram => "bpmndi:",
            Ns::Other(_) => "",
        }
    }
}

/// One attribute with its value (entities expanded) and where its value starts.
#[derive(Debug, Clone)]
pub struct XmlAttr {
    pub ns: Ns,
    /// The prefix as written (`zeebe`, `camunda`, …), empty when none.
    pub prefix: String,
    pub name: String,
    pub value: String,
    pub pos: Pos,
}

/// One element of the tree.
#[derive(Debug, Clone)]
pub struct XmlElement {
    pub ns: Ns,
    pub prefix: String,
    pub name: String,
    pub attrs: Vec<XmlAttr>,
    pub children: Vec<XmlElement>,
    /// Concatenated text and CDATA content directly inside this element.
    pub text: String,
    /// Where the element's `<` is.
    pub pos: Pos,
    /// Where its text content starts (the first character after the start tag).
    pub text_pos: Pos,
}

impl XmlElement {
    pub fn attr(&self, name: &str) -> Option<&XmlAttr> {
        self.attrs.iter().find(|a| a.name == name && matches!(a.ns, Ns::None))
    }

    pub fn attr_value(&self, name: &str) -> Option<&str> {
        self.attr(name).map(|a| a.value.as_str())
    }

    pub fn attr_ns(&self, ns: &Ns, name: &str) -> Option<&XmlAttr> {
        self.attrs.iter().find(|a| a.name == name && &a.ns == ns)
    }

    pub fn id(&self) -> Option<&str> {
        self.attr_value("id")
    }

    /// The name as written in the file, with its prefix.
    pub fn qualified_name(&self) -> String {
        if self.prefix.is_empty() { self.name.clone() } else { format!("{}:{}", self.prefix, self.name) }
    }

    pub fn is(&self, ns: &Ns, name: &str) -> bool {
        &self.ns == ns && self.name == name
    }

    pub fn children_named<'a>(&'a self, ns: &'a Ns, name: &'a str) -> impl Iterator<Item = &'a XmlElement> + 'a {
        self.children.iter().filter(move |c| c.is(ns, name))
    }

    pub fn child(&self, ns: &Ns, name: &str) -> Option<&XmlElement> {
        self.children.iter().find(|c| c.is(ns, name))
    }
}

/// Why a document could not be turned into a tree. Always carries a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    pub pos: Pos,
    pub message: String,
}

/// Maps byte offsets to 1-based line and column (columns count characters, not bytes).
///
/// A column is the number of characters between the line's start and the offset. Characters
/// are counted as the bytes that do not continue a UTF-8 sequence, with a running count kept at
/// every [`CHECKPOINT`] bytes, so each lookup costs at most two short scans whatever the line's
/// length — a model written on one 10 MB line parses as fast as a pretty-printed one.
#[derive(Debug)]
pub struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    /// `checkpoints[k]`: characters in `text[..k * CHECKPOINT]`.
    checkpoints: Vec<usize>,
}

/// Bytes between two running character counts of [`LineIndex`].
const CHECKPOINT: usize = 256;

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(memchr_newlines(text.as_bytes()));
        let mut checkpoints = Vec::with_capacity(text.len() / CHECKPOINT + 1);
        let mut chars = 0;
        checkpoints.push(0);
        for block in text.as_bytes().chunks(CHECKPOINT) {
            chars += count_chars(block);
            checkpoints.push(chars);
        }
        LineIndex { text, line_starts, checkpoints }
    }

    /// Characters in `text[..offset]` (`offset` on a character boundary).
    fn chars_before(&self, offset: usize) -> usize {
        let block = offset / CHECKPOINT;
        self.checkpoints[block] + count_chars(&self.text.as_bytes()[block * CHECKPOINT..offset])
    }

    pub fn pos(&self, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let mut end = offset;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        // A line of ordinary length is counted directly; a long one through the checkpoints.
        let chars = if end - start <= 2 * CHECKPOINT {
            count_chars(&self.text.as_bytes()[start..end])
        } else {
            self.chars_before(end) - self.chars_before(start)
        };
        let col = chars + 1;
        Pos { line: line as u32 + 1, col: col as u32 }
    }
}

/// Characters in a run of UTF-8 bytes: the bytes that start a character.
fn count_chars(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| (**b & 0xC0) != 0x80).count()
}

fn memchr_newlines(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)
}

/// Parses a document into its root element.
pub fn parse_document(bytes: &[u8], limits: &Limits) -> Result<XmlElement, XmlError> {
    let start = Pos { line: 1, col: 1 };
    if bytes.len() > limits.max_bytes {
        return Err(XmlError {
            pos: start,
            message: format!(
                "the file is {} bytes, more than the limit of {} bytes; split the model or raise the limit",
                bytes.len(),
                limits.max_bytes
            ),
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let lines = LineIndex::new(std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""));
            return Err(XmlError {
                pos: lines.pos(e.valid_up_to()),
                message:
                    "the file is not valid UTF-8; save it as UTF-8 (the encoding bpmn.io and Camunda Modeler write)"
                        .to_string(),
            });
        }
    };
    TreeBuilder::new(text, limits).run()
}

struct TreeBuilder<'a> {
    reader: NsReader<&'a [u8]>,
    lines: LineIndex<'a>,
    text: &'a str,
    limits: &'a Limits,
    stack: Vec<XmlElement>,
    elements: usize,
    root: Option<XmlElement>,
    /// Depth inside a skipped diagram (BPMNDI) subtree; 0 when not skipping.
    skipping: usize,
}

impl<'a> TreeBuilder<'a> {
    fn new(text: &'a str, limits: &'a Limits) -> Self {
        let mut reader = NsReader::from_str(text);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        config.trim_text_start = false;
        config.trim_text_end = false;
        TreeBuilder {
            reader,
            lines: LineIndex::new(text),
            text,
            limits,
            stack: Vec::new(),
            elements: 0,
            root: None,
            skipping: 0,
        }
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> XmlError {
        XmlError { pos: self.lines.pos(offset), message: message.into() }
    }

    fn run(mut self) -> Result<XmlElement, XmlError> {
        loop {
            let offset = self.reader.buffer_position() as usize;
            let event = match self.reader.read_event() {
                Ok(ev) => ev,
                Err(e) => {
                    let at = self.reader.error_position() as usize;
                    let mut message = format!("malformed XML: {e}");
                    if let Some(open) = self.stack.last() {
                        message.push_str(&format!(
                            " (the innermost open element is <{}> from line {}, column {})",
                            open.qualified_name(),
                            open.pos.line,
                            open.pos.col
                        ));
                    }
                    return Err(self.error(at, message));
                }
            };
            if self.skipping > 0 {
                // Diagram interchange has no meaning for execution: check it is well-formed
                // (the reader does) but build nothing.
                match event {
                    Event::Start(start) => {
                        self.check_attributes(&start, offset)?;
                        self.skipping += 1;
                    }
                    Event::Empty(start) => self.check_attributes(&start, offset)?,
                    Event::End(_) => self.skipping -= 1,
                    Event::Eof => break,
                    _ => {}
                }
                if self.stack.len() + self.skipping > self.limits.max_depth {
                    return Err(self.error(
                        offset,
                        format!("elements are nested deeper than the limit of {}", self.limits.max_depth),
                    ));
                }
                continue;
            }
            match event {
                Event::Start(start) if !self.stack.is_empty() && self.is_diagram(&start) => {
                    self.check_attributes(&start, offset)?;
                    self.skipping = 1;
                }
                Event::Empty(start) if !self.stack.is_empty() && self.is_diagram(&start) => {
                    self.check_attributes(&start, offset)?;
                }
                Event::Start(start) => {
                    let element = self.open(&start, offset)?;
                    self.stack.push(element);
                    if self.stack.len() > self.limits.max_depth {
                        return Err(self.error(
                            offset,
                            format!("elements are nested deeper than the limit of {}", self.limits.max_depth),
                        ));
                    }
                }
                Event::Empty(start) => {
                    let element = self.open(&start, offset)?;
                    self.close(element, offset)?;
                }
                Event::End(_) => {
                    let Some(element) = self.stack.pop() else {
                        return Err(self.error(offset, "malformed XML: closing tag without an opening tag"));
                    };
                    self.close(element, offset)?;
                }
                Event::Text(t) => {
                    let content = t.xml_content(quick_xml::XmlVersion::Implicit1_0);
                    self.push_text(&content, offset)?;
                }
                Event::CData(t) => {
                    let content = t.into_inner().into_owned();
                    self.push_text(&content, offset)?;
                }
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(ch)) => ch.to_string(),
                        Ok(None) => match predefined_entity(&r) {
                            Some(s) => s.to_string(),
                            None => {
                                return Err(self.error(
                                    offset,
                                    format!(
                                        "undefined entity &{};: only &lt; &gt; &amp; &apos; &quot; and character references are allowed",
                                        &*r
                                    ),
                                ));
                            }
                        },
                        Err(e) => return Err(self.error(offset, format!("bad character reference: {e}"))),
                    };
                    self.push_text(&resolved, offset)?;
                }
                Event::DocType(d) => {
                    let content: &str = &d;
                    if content.contains('[') || content.contains("SYSTEM") || content.contains("PUBLIC") {
                        return Err(self.error(
                            offset,
                            "document type declarations with entities or external subsets are not accepted; remove the <!DOCTYPE …> block",
                        ));
                    }
                }
                Event::Eof => break,
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            }
        }
        if let Some(open) = self.stack.last() {
            return Err(XmlError {
                pos: open.pos,
                message: format!("malformed XML: element <{}> is never closed", open.qualified_name()),
            });
        }
        self.root.ok_or_else(|| XmlError {
            pos: Pos { line: 1, col: 1 },
            message: "the file contains no XML element".into(),
        })
    }

    fn is_diagram(&self, start: &BytesStart<'_>) -> bool {
        let (ns, local) = self.reader.resolver().resolve_element(start.name());
        matches!(ns, ResolveResult::Bound(uri) if uri.as_ref() == NS_DI_PREFIXES[0]) && local.as_ref() == "BPMNDiagram"
    }

    fn push_text(&mut self, content: &str, offset: usize) -> Result<(), XmlError> {
        match self.stack.last_mut() {
            Some(top) => {
                top.text.push_str(content);
                Ok(())
            }
            None if content.trim().is_empty() => Ok(()),
            None => Err(self.error(offset, "malformed XML: text outside the root element")),
        }
    }

    /// The well-formedness of a start tag's attributes, for elements that are not built
    /// (diagram interchange): as [`Self::open`] checks them.
    fn check_attributes(&self, start: &BytesStart<'_>, offset: usize) -> Result<(), XmlError> {
        for attr in start.attributes().with_checks(true) {
            let attr = attr.map_err(|e| self.malformed_attribute(start, offset, &e.to_string()))?;
            self.check_raw_value(start, offset, &attr)?;
        }
        Ok(())
    }

    fn malformed_attribute(&self, start: &BytesStart<'_>, offset: usize, text: &str) -> XmlError {
        // quick-xml prefixes a byte offset inside the tag; the diagnostic has a position.
        let text = match text.split_once(": ") {
            Some((head, rest)) if head.starts_with("position ") => rest,
            _ => text,
        };
        self.error(
            offset,
            format!("malformed attribute in <{}>: {text}", String::from_utf8_lossy(start.name().as_ref().as_bytes())),
        )
    }

    /// XML forbids a raw `<` in an attribute value (it must be written `&lt;`); quick-xml does
    /// not check it.
    fn check_raw_value(
        &self,
        start: &BytesStart<'_>,
        offset: usize,
        attr: &quick_xml::events::attributes::Attribute<'_>,
    ) -> Result<(), XmlError> {
        if let Some(i) = attr.value.find('<') {
            let name: &str = attr.key.as_ref();
            let at = self
                .borrowed_offset(&attr.value)
                .map(|o| o + i)
                .unwrap_or_else(|| self.attr_value_offset(offset, offset + start.len() + 2, name.as_bytes()));
            return Err(self.error(
                at,
                format!("malformed XML: a raw `<` in the value of attribute `{name}`; write it as `&lt;`"),
            ));
        }
        Ok(())
    }

    fn open(&mut self, start: &BytesStart<'_>, offset: usize) -> Result<XmlElement, XmlError> {
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(self.error(offset, format!("more than {} elements in one file", self.limits.max_elements)));
        }
        let resolver = self.reader.resolver();
        let (ns, local) = resolver.resolve_element(start.name());
        let ns = match ns {
            ResolveResult::Bound(uri) => Ns::from_uri(uri.as_ref()),
            ResolveResult::Unbound => Ns::None,
            ResolveResult::Unknown(p) => {
                return Err(self.error(offset, format!("namespace prefix `{}` is not declared", p)));
            }
        };
        let prefix = start.name().prefix().map(|p| p.as_ref().to_string()).unwrap_or_default();
        let name = local.as_ref().to_string();
        let tag_end = offset + start.len() + 2;
        let mut attrs = Vec::new();
        for attr in start.attributes().with_checks(true) {
            let attr = attr.map_err(|e| self.malformed_attribute(start, offset, &e.to_string()))?;
            self.check_raw_value(start, offset, &attr)?;
            let key = attr.key;
            if key.as_namespace_binding().is_some() {
                continue;
            }
            let (ans, alocal) = resolver.resolve_attribute(key);
            let ans = match ans {
                ResolveResult::Bound(uri) => Ns::from_uri(uri.as_ref()),
                ResolveResult::Unbound => Ns::None,
                ResolveResult::Unknown(p) => {
                    return Err(self.error(offset, format!("namespace prefix `{}` is not declared", p)));
                }
            };
            let aprefix = key.prefix().map(|p| p.as_ref().to_string()).unwrap_or_default();
            let aname = alocal.as_ref().to_string();
            let value = attr.normalized_value(quick_xml::XmlVersion::Implicit1_0).map_err(|e| {
                self.error(
                    offset,
                    format!("bad value of attribute `{aname}`: {e}; only predefined entities and character references are allowed"),
                )
            })?;
            let value_offset = self
                .borrowed_offset(&attr.value)
                .unwrap_or_else(|| self.attr_value_offset(offset, tag_end, key.as_ref().as_bytes()));
            attrs.push(XmlAttr {
                ns: ans,
                prefix: aprefix,
                name: aname,
                value: value.into_owned(),
                pos: self.lines.pos(value_offset),
            });
        }
        let pos = self.lines.pos(offset);
        let text_pos = self.lines.pos(tag_end.min(self.text.len()));
        Ok(XmlElement { ns, prefix, name, attrs, children: Vec::new(), text: String::new(), pos, text_pos })
    }

    /// Where a slice borrowed from the input starts (attribute values usually are).
    fn borrowed_offset(&self, v: &str) -> Option<usize> {
        let start = self.text.as_ptr() as usize;
        let at = v.as_ptr() as usize;
        (at >= start && at <= start + self.text.len()).then(|| at - start)
    }

    /// Finds where an attribute's value starts inside the start tag, for precise expression positions.
    fn attr_value_offset(&self, tag_start: usize, tag_end: usize, key: &[u8]) -> usize {
        let tag_end = tag_end.min(self.text.len());
        let tag = &self.text.as_bytes()[tag_start..tag_end];
        let mut from = 0;
        while let Some(found) = find(&tag[from..], key) {
            let at = from + found;
            let before_ok = at > 0 && tag[at - 1].is_ascii_whitespace();
            let mut rest = at + key.len();
            while rest < tag.len() && tag[rest].is_ascii_whitespace() {
                rest += 1;
            }
            if before_ok && rest < tag.len() && tag[rest] == b'=' {
                rest += 1;
                while rest < tag.len() && tag[rest].is_ascii_whitespace() {
                    rest += 1;
                }
                return tag_start + rest + 1;
            }
            from = at + 1;
        }
        tag_start
    }

    fn close(&mut self, element: XmlElement, offset: usize) -> Result<(), XmlError> {
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(element),
            None if self.root.is_none() => self.root = Some(element),
            None => return Err(self.error(offset, "malformed XML: more than one root element")),
        }
        Ok(())
    }
}

fn predefined_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "apos" => "'",
        "quot" => "\"",
        _ => return None,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<XmlElement, XmlError> {
        parse_document(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn keeps_positions_of_elements_and_attribute_values() {
        let root = parse("<a xmlns=\"urn:x\">\n  <b id=\"x\"\n     name=\"Иван\">t&amp;u</b>\n</a>").unwrap();
        let b = &root.children[0];
        assert_eq!(b.pos, Pos { line: 2, col: 3 });
        assert_eq!(b.attr("name").unwrap().pos, Pos { line: 3, col: 12 });
        assert_eq!(b.attr("id").unwrap().pos, Pos { line: 2, col: 10 });
        assert_eq!(b.text, "t&u");
    }

    #[test]
    fn columns_count_characters_across_checkpoints() {
        // Cyrillic (2 bytes), CJK (3) and emoji (4) straddle the 256-byte checkpoints; the lines are
        // long enough (about 1,750 bytes) for both ways of counting a column.
        let mut text = String::new();
        for i in 0..3000 {
            text.push(['a', 'ж', '中', '😀'][i % 4]);
            if i % 700 == 699 {
                text.push('\n');
            }
        }
        let index = LineIndex::new(&text);
        let (mut line, mut col) = (1u32, 1u32);
        for (offset, ch) in text.char_indices() {
            assert_eq!(index.pos(offset), Pos { line, col }, "at byte {offset}");
            if ch == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        assert_eq!(index.pos(text.len()), Pos { line, col });
    }

    #[test]
    fn refuses_entity_declarations() {
        let bomb =
            "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><a>&lol2;</a>";
        let err = parse(bomb).unwrap_err();
        assert!(err.message.contains("document type declarations"), "{}", err.message);
        let undefined = parse("<a>&xxe;</a>").unwrap_err();
        assert!(undefined.message.contains("undefined entity &xxe;"), "{}", undefined.message);
    }

    #[test]
    fn limits_depth_and_size() {
        let deep = format!("{}{}", "<a>".repeat(300), "</a>".repeat(300));
        assert!(parse(&deep).unwrap_err().message.contains("nested deeper"));
        let limits = Limits { max_bytes: 10, ..Limits::default() };
        assert!(parse_document(b"<a>0123456789</a>", &limits).unwrap_err().message.contains("more than the limit"));
    }

    #[test]
    fn reports_malformed_xml_with_position() {
        let err = parse("<a>\n<b></c></a>").unwrap_err();
        assert_eq!(err.pos.line, 2);
        assert!(err.message.starts_with("malformed XML"));
        assert!(parse("<a>").unwrap_err().message.contains("never closed"));
        assert!(parse_document(b"<a>\xff</a>", &Limits::default()).unwrap_err().message.contains("UTF-8"));
    }
}
