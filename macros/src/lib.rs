//! Attribute macros for [classtrack](https://docs.rs/classtrack), re-exported by it (feature
//! `macros`, on by default): use them as `#[classtrack::class]` and `#[classtrack::scope]`.
//!
//! - `#[classtrack::class]` on an `impl` block runs each of its constructors (every function
//!   that returns `Self`, `Result<Self, _>`, `Option<Self>`, `Box<Self>`, `Arc<Self>` or
//!   `Rc<Self>`) in the type's class scope; `#[classtrack::class(name = "…")]` names the class.
//! - `#[classtrack::scope]` runs a function in the class scope named after it
//!   (`module::path::function`); `#[classtrack::scope("name")]` names the class.
//!
//! An `async fn` returns its future wrapped with `InClass`, so what it allocates after each
//! `.await` is charged too. Functions that are not wrapped are left as they are.
//!
//! - `#[derive(classtrack::Footprint)]` implements `classtrack::Footprint` by visiting each
//!   field by name; `#[footprint(skip)]` on a field counts its inline bytes only.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    parse_macro_input, Block, Data, DeriveInput, Fields, GenericArgument, ImplItem, ImplItemFn,
    Item, ItemFn, LitStr, PathArguments, ReturnType, Signature, Type,
};

/// Runs the constructors of an `impl` block in the type's class scope.
///
/// Every associated function of the block (inherent, or of a trait: `Default`, `From<…>`,
/// `Clone`, `FromStr`, `Deserialize` by hand…) that returns `Self`, `Result<Self, _>`,
/// `Option<Self>`, `Box<Self>`, `Arc<Self>` or `Rc<Self>` (or the type by its name) runs its
/// body in `Self`'s class scope, as `classtrack::scope::<Self, _>(|| body)` would: what it
/// allocates is charged to the class, on every return path and on a panic. An `async fn`
/// among them returns its future wrapped with `InClass`, so what it allocates after each
/// `.await` is charged too. Other functions are left as they are.
///
/// `#[classtrack::class(name = "orders")]` charges the class named `orders` instead of the
/// type's (`std::any::type_name`).
///
/// Per-class totals need nothing more. Per-instance tracking (birth, death, size history)
/// still goes through `ClassTracker::construct` or `Tracked<T>`: a constructor that returns
/// `Self` has no place to hook the instance's drop.
///
/// Compile errors: on anything but an `impl` block; on a block with no constructor; on a
/// `const fn` constructor (a scope is entered at run time).
#[proc_macro_attribute]
pub fn class(attr: TokenStream, item: TokenStream) -> TokenStream {
    let original = TokenStream2::from(item.clone());
    let args = parse_macro_input!(attr as ClassArgs);
    let item = parse_macro_input!(item as Item);
    match expand_class(args, item) {
        Ok(tokens) => tokens.into(),
        // The item as it was, beside the error: no second error for its uses.
        Err(e) => {
            let e = e.to_compile_error();
            quote!(#e #original).into()
        }
    }
}

/// Runs a function's body in a class scope: by default the one named after the function
/// (`module::path::function`), or the one named by the argument, `#[classtrack::scope("name")]`.
///
/// What the body allocates is charged to the class, on every return path and on a panic; an
/// `async fn` returns its future wrapped with `InClass`, so what it allocates after each
/// `.await` is charged too. On a method inside an `impl` block too.
///
/// Compile errors: on anything but a function; on a `const fn`.
#[proc_macro_attribute]
pub fn scope(attr: TokenStream, item: TokenStream) -> TokenStream {
    let name = if attr.is_empty() {
        None
    } else {
        Some(parse_macro_input!(attr as ScopeArgs).name)
    };
    let item = TokenStream2::from(item);
    match expand_scope(name, item.clone()) {
        Ok(tokens) => tokens.into(),
        // The item as it was, beside the error: no second error for its uses.
        Err(e) => {
            let e = e.to_compile_error();
            quote!(#e #item).into()
        }
    }
}

/// `name = "…"`, or nothing.
struct ClassArgs {
    name: Option<LitStr>,
}

impl Parse for ClassArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Ok(ClassArgs { name: None });
        }
        let key: syn::Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected `name = \"…\"`: #[classtrack::class] takes the class's name, or nothing \
                 (the type's name)",
            )
        })?;
        if key != "name" {
            return Err(syn::Error::new(
                key.span(),
                format!(
                    "unknown argument `{key}`: #[classtrack::class] takes `name = \"…\"`, or nothing \
                     (the type's name)"
                ),
            ));
        }
        input.parse::<syn::Token![=]>()?;
        let name: LitStr = input.parse()?;
        if name.value().is_empty() {
            return Err(syn::Error::new(name.span(), "a class name cannot be empty"));
        }
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the class's name"));
        }
        Ok(ClassArgs { name: Some(name) })
    }
}

/// `"name"`.
struct ScopeArgs {
    name: LitStr,
}

impl Parse for ScopeArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name: LitStr = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected the class's name as a string: #[classtrack::scope(\"name\")], or no \
                 argument (the function's path)",
            )
        })?;
        if name.value().is_empty() {
            return Err(syn::Error::new(name.span(), "a class name cannot be empty"));
        }
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the class's name"));
        }
        Ok(ScopeArgs { name })
    }
}

fn expand_class(args: ClassArgs, item: Item) -> syn::Result<TokenStream2> {
    let Item::Impl(mut block) = item else {
        return Err(syn::Error::new(
            item_span(&item),
            "#[classtrack::class] goes on an `impl` block (`impl Foo { … }` or `impl Trait for \
             Foo { … }`), whose constructors it runs in the type's class scope; on a function, \
             use #[classtrack::scope]",
        ));
    };
    // Where `Self` cannot be named as a `'static` type (a generic or borrowed type), the class
    // is found by the type's name.
    let by_name = !block.generics.params.is_empty() || has_lifetime(&block.self_ty);
    let self_ty = block.self_ty.to_token_stream().to_string();
    let mut wrapped = 0;
    for item in &mut block.items {
        let ImplItem::Fn(f) = item else { continue };
        if !returns_self(&f.sig.output, &self_ty) {
            continue;
        }
        if let Some(c) = &f.sig.constness {
            return Err(syn::Error::new(
                c.span(),
                "a `const fn` cannot run in a class scope (a scope is entered at run time): \
                 remove `const`, or move this function to an impl block without \
                 #[classtrack::class]",
            ));
        }
        let class = match (&args.name, by_name) {
            (Some(name), _) => Class::Named(quote!(#name)),
            (None, true) => Class::Named(quote!(::core::any::type_name::<Self>())),
            (None, false) => Class::Type,
        };
        wrap_fn(f, &class);
        wrapped += 1;
    }
    if wrapped == 0 {
        return Err(syn::Error::new(
            block.self_ty.span(),
            "no constructor in this impl block: #[classtrack::class] wraps the functions that \
             return `Self`, `Result<Self, _>`, `Option<Self>`, `Box<Self>`, `Arc<Self>` or \
             `Rc<Self>`; to run other functions in a scope, put #[classtrack::scope] on them",
        ));
    }
    Ok(block.into_token_stream())
}

fn expand_scope(name: Option<LitStr>, item: TokenStream2) -> syn::Result<TokenStream2> {
    // A free function, or a method (an impl item: same shape, parsed as a free function).
    let mut f: ItemFn = syn::parse2(item.clone()).map_err(|_| {
        syn::Error::new(
            first_span(&item),
            "#[classtrack::scope] goes on a function (free, or a method in an impl block); on \
             an `impl` block, use #[classtrack::class]",
        )
    })?;
    if let Some(c) = &f.sig.constness {
        return Err(syn::Error::new(
            c.span(),
            "a `const fn` cannot run in a class scope (a scope is entered at run time): remove \
             `const`, or the attribute",
        ));
    }
    let class = match name {
        Some(name) => Class::Named(quote!(#name)),
        None => {
            let ident = f.sig.ident.to_string();
            Class::Named(quote!(
                ::core::concat!(::core::module_path!(), "::", #ident)
            ))
        }
    };
    let (sig, block) = (&f.sig, &*f.block);
    *f.block = wrapped_body(sig, block, &class);
    Ok(f.into_token_stream())
}

/// The class a wrapped body runs in.
enum Class {
    /// `Self`'s, by its type.
    Type,
    /// By a name (an expression of type `&str`).
    Named(TokenStream2),
}

fn wrap_fn(f: &mut ImplItemFn, class: &Class) {
    f.block = wrapped_body(&f.sig, &f.block, class);
}

/// `block` run in `class`: a scope guard for a sync function, the future wrapped with
/// `InClass` for an `async fn`.
fn wrapped_body(sig: &Signature, block: &Block, class: &Class) -> Block {
    let span = block.span();
    let tokens = if sig.asyncness.is_some() {
        let output = match &sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => quote!(#ty),
        };
        let wrap = match class {
            Class::Type => quote_spanned! {span=>
                ::classtrack::__private::in_class_of::<Self, #output, _>(async move #block)
            },
            Class::Named(name) => quote_spanned! {span=>
                ::classtrack::__private::in_class_named::<#output, _>(async move #block, #name)
            },
        };
        quote_spanned! {span=> { #wrap.await } }
    } else {
        let enter = match class {
            Class::Type => quote_spanned! {span=> ::classtrack::enter::<Self>() },
            Class::Named(name) => quote_spanned! {span=> ::classtrack::enter_named(#name) },
        };
        quote_spanned! {span=>
            {
                let __classtrack_scope = #enter;
                #block
            }
        }
    };
    syn::parse2(tokens).expect("a block")
}

/// Whether `output` is `Self` (or the impl's type by its name), or `Result`, `Option`, `Box`,
/// `Arc` or `Rc` of it.
fn returns_self(output: &ReturnType, self_ty: &str) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    is_self(ty, self_ty) || wraps_self(ty, self_ty)
}

fn is_self(ty: &Type, self_ty: &str) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self") => true,
        Type::Paren(p) => is_self(&p.elem, self_ty),
        Type::Group(g) => is_self(&g.elem, self_ty),
        other => other.to_token_stream().to_string() == self_ty,
    }
}

fn wraps_self(ty: &Type, self_ty: &str) -> bool {
    let Type::Path(p) = ty else { return false };
    let Some(last) = p.path.segments.last() else {
        return false;
    };
    if !matches!(
        last.ident.to_string().as_str(),
        "Result" | "Option" | "Box" | "Arc" | "Rc"
    ) {
        return false;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    matches!(args.args.first(), Some(GenericArgument::Type(t)) if is_self(t, self_ty))
}

fn has_lifetime(ty: &Type) -> bool {
    ty.to_token_stream()
        .into_iter()
        .any(|t| matches!(t, proc_macro2::TokenTree::Punct(p) if p.as_char() == '\''))
}

fn item_span(item: &Item) -> Span {
    item.to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span())
}

fn first_span(tokens: &TokenStream2) -> Span {
    tokens
        .clone()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span())
}

/// Implements `classtrack::Footprint` for a struct or an enum by visiting its fields.
///
/// Each field is a part named by the field (`0`, `1`, … in a tuple struct or variant; an
/// enum's active variant's fields): its inline bytes and what it owns. `#[footprint(skip)]` on
/// a field counts its inline bytes only, for a field whose type has no `Footprint` (a lock, a
/// handle to something not owned). Every type parameter must implement `Footprint`.
///
/// Compile errors: on a union; on a `footprint` attribute other than `#[footprint(skip)]`.
#[proc_macro_derive(Footprint, attributes(footprint))]
pub fn derive_footprint(item: TokenStream) -> TokenStream {
    let input = parse_macro_input!(item as DeriveInput);
    match expand_footprint(input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand_footprint(mut input: DeriveInput) -> syn::Result<TokenStream2> {
    let visitor = quote!(__classtrack_visitor);
    let body = match &input.data {
        Data::Struct(data) => {
            let (pattern, visits) = visit_fields(&data.fields, &visitor)?;
            quote!(let Self #pattern = self; #(#visits)*)
        }
        Data::Enum(data) => {
            let mut arms = Vec::new();
            for variant in &data.variants {
                let name = &variant.ident;
                let (pattern, visits) = visit_fields(&variant.fields, &visitor)?;
                arms.push(quote!(Self::#name #pattern => { #(#visits)* }));
            }
            if arms.is_empty() {
                // No value of an empty enum exists.
                quote!(match *self {})
            } else {
                quote!(match self { #(#arms)* })
            }
        }
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span,
                "classtrack::Footprint cannot be derived for a union: which field is live is \
                 not known; implement `Footprint` by hand",
            ))
        }
    };
    let params: Vec<_> = input
        .generics
        .type_params()
        .map(|p| p.ident.clone())
        .collect();
    let where_clause = input.generics.make_where_clause();
    for p in params {
        where_clause
            .predicates
            .push(syn::parse_quote!(#p: ::classtrack::Footprint));
    }
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    let ident = &input.ident;
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::classtrack::Footprint for #ident #type_generics #where_clause {
            #[allow(unused_variables)]
            fn footprint(&self, #visitor: &mut ::classtrack::Visitor<'_>) {
                #body
            }
        }
    })
}

/// The pattern that binds `fields` by reference, and a visit of each one not skipped.
fn visit_fields(
    fields: &Fields,
    visitor: &TokenStream2,
) -> syn::Result<(TokenStream2, Vec<TokenStream2>)> {
    let mut bindings = Vec::new();
    let mut visits = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        let binding = quote::format_ident!("__classtrack_field_{}", i);
        let name = match &field.ident {
            Some(ident) => ident.to_string(),
            None => i.to_string(),
        };
        let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
        let skip = skipped(&field.attrs)?;
        match &field.ident {
            Some(ident) => bindings.push(quote!(#ident: #binding)),
            None => bindings.push(quote!(#binding)),
        }
        if !skip {
            visits.push(quote_spanned!(field.span()=> #visitor.field(#name, #binding);));
        }
    }
    let pattern = match fields {
        Fields::Named(_) => quote!({ #(#bindings),* }),
        Fields::Unnamed(_) => quote!(( #(#bindings),* )),
        Fields::Unit => quote!(),
    };
    Ok((pattern, visits))
}

/// Whether a field carries `#[footprint(skip)]`; any other `footprint` attribute is an error.
fn skipped(attrs: &[syn::Attribute]) -> syn::Result<bool> {
    let mut skip = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("footprint")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else {
                Err(meta.error("unknown footprint attribute; the only one is `#[footprint(skip)]`"))
            }
        })?;
    }
    Ok(skip)
}
