// pgdelta: build the future of a concrete impl's async method in a nested fn without
// where-clauses (see PGDELTA.md).
//
// Every method async-trait emits carries `where 'life0: 'async_trait, Self: 'async_trait`.
// rustc answers auto-trait goals from its global cache only when the ParamEnv is empty, so
// with those bounds in scope it proves the future `Send` from scratch in every method: the
// whole type graph of what the future holds (rust-lang/rust#157595). In DataFusion and
// delta-rs that was most of the frontend time of several crates. The nested fn has lifetime
// parameters only and no where-clause, so the `Send` of the future it builds and boxes is
// proved with the global cache. (Boxing an `impl Future + Send` it returned in the method
// instead left the coercion's proof in the method's ParamEnv, for the MIR validator.)

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::visit_mut::{self, VisitMut};
use syn::{
    parse_quote, Block, FnArg, GenericParam, ImplItemFn, ItemImpl, Lifetime, Pat, ReceiverKind,
    ReturnType, Signature, Type, TypePath, TypeReference,
};

/// The parts of an impl block a shim needs: its self type and its lifetime parameters.
#[derive(Clone, Copy)]
pub struct ImplShape<'a> {
    self_ty: &'a Type,
    generics: &'a syn::Generics,
}

impl<'a> ImplShape<'a> {
    /// `None` when a nested fn cannot name everything the impl's methods can: type or const
    /// parameters, bounds, where-clauses, or a self type with elided lifetimes, `impl Trait`,
    /// `_` or a trait object (whose default lifetime differs behind a reference).
    pub fn of(item: &'a ItemImpl) -> Option<Self> {
        let only_plain_lifetimes = item.generics.params.iter().all(|param| match param {
            GenericParam::Lifetime(param) => param.bounds.is_empty() && param.attrs.is_empty(),
            _ => false,
        });
        if !only_plain_lifetimes || item.generics.where_clause.is_some() {
            return None;
        }
        if !TypeCheck::passes(&item.self_ty, Position::SelfType) {
            return None;
        }
        Some(ImplShape {
            self_ty: &item.self_ty,
            generics: &item.generics,
        })
    }

    fn lifetimes(&self) -> impl Iterator<Item = &'a Lifetime> {
        self.generics.params.iter().filter_map(|param| match param {
            GenericParam::Lifetime(param) => Some(&param.lifetime),
            _ => None,
        })
    }
}

/// Names the elided lifetimes of an impl header (`impl ReadOptions<'_> for CsvReadOptions<'_>`)
/// as impl lifetime parameters, which a shim can then declare. Each `'_` there is a fresh
/// lifetime of the impl already, so the impl means the same.
pub fn name_elided_impl_lifetimes(item: &mut ItemImpl) {
    struct NameElided(Vec<Lifetime>);
    impl NameElided {
        fn next(&mut self) -> Lifetime {
            let lifetime = Lifetime::new(
                &format!("'__async_trait_impl{}", self.0.len()),
                proc_macro2::Span::call_site(),
            );
            self.0.push(lifetime.clone());
            lifetime
        }
    }
    impl VisitMut for NameElided {
        fn visit_lifetime_mut(&mut self, lifetime: &mut Lifetime) {
            if lifetime.ident == "_" {
                *lifetime = self.next();
            }
        }
        fn visit_type_reference_mut(&mut self, reference: &mut TypeReference) {
            if reference.lifetime.is_none() {
                reference.lifetime = Some(self.next());
            }
            visit_mut::visit_type_reference_mut(self, reference);
        }
        fn visit_type_fn_ptr_mut(&mut self, _: &mut syn::TypeFnPtr) {}
        fn visit_type_trait_object_mut(&mut self, _: &mut syn::TypeTraitObject) {}
        fn visit_parenthesized_generic_arguments_mut(
            &mut self,
            _: &mut syn::ParenthesizedGenericArguments,
        ) {
        }
    }
    let only_lifetimes = item
        .generics
        .params
        .iter()
        .all(|param| matches!(param, GenericParam::Lifetime(_)));
    if !only_lifetimes || item.generics.where_clause.is_some() {
        return;
    }
    let mut name = NameElided(Vec::new());
    name.visit_type_mut(&mut item.self_ty);
    if let Some((path, _)) = &mut item.trait_ {
        name.visit_path_mut(path);
    }
    for lifetime in name.0.into_iter().rev() {
        item.generics.params.insert(0, parse_quote!(#lifetime));
    }
    if item.generics.lt_token.is_none() && !item.generics.params.is_empty() {
        item.generics.lt_token = Some(Default::default());
        item.generics.gt_token = Some(Default::default());
    }
}

/// Whether a method, as written (before async-trait's rewrite), can have its future built in a
/// shim: no generics or where-clause of its own, plain identifiers for references, no `Self`
/// outside the receiver, no elided lifetime in its output, and no attribute that reads the
/// body's shape (`#[instrument]` finds async-trait's `Box::pin(async move ..)`).
pub fn method_allows_shim(method: &ImplItemFn, is_local: bool) -> bool {
    let sig = &method.sig;
    let plain_signature = !is_local
        && sig.generics.params.is_empty()
        && sig.generics.where_clause.is_none()
        && sig.constness.is_none()
        && matches!(sig.safety, syn::Safety::Default)
        && sig.abi.is_none()
        && sig.variadic.is_none();
    let known_attributes = method.attrs.iter().all(|attr| {
        [
            "doc", "allow", "expect", "warn", "deny", "inline", "must_use",
        ]
        .iter()
        .any(|name| attr.path().is_ident(name))
    });
    let plain_inputs = sig.inputs.iter().all(|arg| match arg {
        FnArg::Receiver(receiver) => {
            receiver.attrs.is_empty()
                && match &receiver.kind {
                    ReceiverKind::Value | ReceiverKind::Reference(..) => true,
                    ReceiverKind::Typed(_, ty) => TypeCheck::passes(ty, Position::Receiver),
                    _ => false,
                }
        }
        FnArg::Typed(arg) => {
            // async-trait names a by-value parameter's pattern `__argN`; a reference's stays.
            let named = match &*arg.ty {
                Type::Reference(_) => matches!(
                    &*arg.pat,
                    Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none()
                ),
                _ => true,
            };
            arg.attrs.is_empty() && named && TypeCheck::passes(&arg.ty, Position::Input)
        }
    });
    let plain_output = match &sig.output {
        ReturnType::Default => true,
        ReturnType::Type(_, ty) => TypeCheck::passes(ty, Position::Output),
    };
    plain_signature
        && known_attributes
        && plain_inputs
        && plain_output
        && !mentions_self_type(&method.block)
}

/// Whether a body needs what a nested fn does not have: `Self` (outside nested items, which
/// have their own), in macro input and local `macro_rules!` too, or `self` in a macro whose
/// input also holds `fn` (async-trait leaves that `self` alone, taking it for another one).
fn mentions_self_type(block: &Block) -> bool {
    struct FindSelf(bool);
    impl VisitMut for FindSelf {
        fn visit_path_mut(&mut self, path: &mut syn::Path) {
            self.0 |= path.segments.first().is_some_and(|s| s.ident == "Self");
            visit_mut::visit_path_mut(self, path);
        }
        fn visit_item_mut(&mut self, item: &mut syn::Item) {
            if let syn::Item::Macro(item) = item {
                self.visit_macro_mut(&mut item.mac);
            }
        }
        fn visit_macro_mut(&mut self, mac: &mut syn::Macro) {
            let has = |name| tokens_contain(mac.tokens.clone(), name);
            self.0 |= has("Self") || (has("self") && has("fn"));
        }
    }
    fn tokens_contain(tokens: TokenStream, name: &str) -> bool {
        tokens.into_iter().any(|tt| match tt {
            proc_macro2::TokenTree::Ident(ident) => ident == name,
            proc_macro2::TokenTree::Group(group) => tokens_contain(group.stream(), name),
            _ => false,
        })
    }
    let mut find = FindSelf(false);
    find.visit_block_mut(&mut block.clone());
    find.0
}

/// The method's new body: a call of a nested fn that builds and boxes the future.
/// `sig` is async-trait's rewritten signature (lifetimes named), `output` the method's return
/// type as written, `body` the async block's contents, whose receiver binding reads `__self`.
/// The method only forwards its parameters, which the shim binds as written, so they lose
/// their `mut` (a `mut x: &T` left on the method would be an unused `mut`).
pub fn shim_block(
    shape: ImplShape,
    sig: &mut Signature,
    output: &ReturnType,
    body: TokenStream,
) -> Block {
    let output = match output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let self_ty = shape.self_ty;
    let mut params = Vec::new();
    let mut args = Vec::new();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => {
                let ty = match &receiver.kind {
                    ReceiverKind::Reference(_, lifetime, mutability) => {
                        quote!(&#lifetime #mutability #self_ty)
                    }
                    ReceiverKind::Typed(_, ty) => replace_self_type(ty, self_ty),
                    _ => quote!(#self_ty),
                };
                // The span of `self`, as the body's `__self` has (a macro_rules! caller's).
                let this = syn::Ident::new("__self", receiver.self_token.span);
                params.push(quote!(#this: #ty));
                let self_token = receiver.self_token;
                args.push(quote!(#self_token));
            }
            FnArg::Typed(arg) => {
                let (pat, ty) = (&arg.pat, &arg.ty);
                params.push(quote!(#pat: #ty));
                if let Pat::Ident(pat) = &**pat {
                    let ident = &pat.ident;
                    args.push(quote!(#ident));
                }
            }
        }
    }
    let lifetimes: Vec<&Lifetime> = shape
        .lifetimes()
        .chain(sig.generics.params.iter().filter_map(|param| match param {
            GenericParam::Lifetime(param) if param.lifetime.ident != "async_trait" => {
                Some(&param.lifetime)
            }
            _ => None,
        }))
        .collect();
    let outliving: Vec<Lifetime> = lifetimes_in_parameters(sig, shape)
        .into_iter()
        .filter(|lifetime| lifetimes.contains(&lifetime))
        .collect();
    let outliving_unit = outliving.iter().map(|_| quote!(&()));
    let shim = format_ident!("__async_trait_{}", sig.ident);
    // `_: &'async_trait (&'life0 (), ..)` implies `'life0: 'async_trait`, .. without a
    // where-clause: implied bounds are not part of the ParamEnv. It names the lifetimes of
    // the parameters, which the method's where-clause bounds so (`Self: 'async_trait` for
    // the receiver's); an impl lifetime only in the output has no such bound.
    let block = parse_quote! {{
        #[allow(
            clippy::let_unit_value,
            clippy::no_effect_underscore_binding,
            clippy::shadow_same,
            clippy::too_many_arguments,
            clippy::type_complexity,
            clippy::used_underscore_binding,
            non_snake_case
        )]
        fn #shim<'async_trait, #(#lifetimes),*>(
            #(#params,)*
            _: &'async_trait (#(&#outliving (),)*),
        ) -> ::core::pin::Pin<Box<
            dyn ::core::future::Future<Output = #output> + ::core::marker::Send + 'async_trait
        >> {
            Box::pin(async move { #body })
        }
        #shim(#(#args,)* &(#(#outliving_unit,)*))
    }};
    drop_mut_of_forwarded_parameters(sig);
    block
}

fn drop_mut_of_forwarded_parameters(sig: &mut Signature) {
    for arg in &mut sig.inputs {
        if let FnArg::Typed(arg) = arg {
            if let Pat::Ident(pat) = &mut *arg.pat {
                pat.mutability = None;
            }
        }
    }
}

/// The lifetimes named in the types of the method's parameters (the receiver's: its own and
/// the self type's), `'static` and higher-ranked ones included.
fn lifetimes_in_parameters(sig: &Signature, shape: ImplShape) -> Vec<Lifetime> {
    struct Collect(Vec<Lifetime>);
    impl VisitMut for Collect {
        fn visit_lifetime_mut(&mut self, lifetime: &mut Lifetime) {
            if !self.0.contains(lifetime) {
                self.0.push(lifetime.clone());
            }
        }
    }
    let mut collect = Collect(Vec::new());
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => {
                collect.visit_receiver_mut(&mut receiver.clone());
                collect.visit_type_mut(&mut shape.self_ty.clone());
            }
            FnArg::Typed(arg) => collect.visit_type_mut(&mut arg.ty.clone()),
        }
    }
    collect.0
}

fn replace_self_type(ty: &Type, self_ty: &Type) -> TokenStream {
    struct ReplaceSelf<'a>(&'a Type);
    impl VisitMut for ReplaceSelf<'_> {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::Path(path) = ty {
                if path.qself.is_none() && path.path.is_ident("Self") {
                    *ty = self.0.clone();
                    return;
                }
            }
            visit_mut::visit_type_mut(self, ty);
        }
    }
    let mut ty = ty.clone();
    ReplaceSelf(self_ty).visit_type_mut(&mut ty);
    quote!(#ty)
}

/// Rejects types a nested fn would read differently or could not name.
struct TypeCheck {
    position: Position,
    passes: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Position {
    /// The impl's self type, written into the shim's receiver parameter.
    SelfType,
    /// A typed receiver (`self: Arc<Self>`): `Self` alone is replaced by the self type.
    Receiver,
    /// A parameter: async-trait names its elided lifetimes.
    Input,
    Output,
}

impl TypeCheck {
    fn passes(ty: &Type, position: Position) -> bool {
        let mut check = TypeCheck {
            position,
            passes: true,
        };
        check.visit_type_mut(&mut ty.clone());
        check.passes
    }
}

impl VisitMut for TypeCheck {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        match ty {
            Type::ImplTrait(_)
            | Type::Infer(_)
            | Type::FnPtr(_)
            | Type::Macro(_)
            | Type::Verbatim(_) => self.passes = false,
            // A trait object's default lifetime is 'static in an impl header but the
            // reference's lifetime behind `&self`.
            Type::TraitObject(_) if self.position == Position::SelfType => self.passes = false,
            Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self") => {
                self.passes &= self.position == Position::Receiver;
            }
            _ => visit_mut::visit_type_mut(self, ty),
        }
    }

    fn visit_type_path_mut(&mut self, path: &mut TypePath) {
        if path
            .path
            .segments
            .first()
            .is_some_and(|s| s.ident == "Self")
        {
            self.passes = false;
        }
        visit_mut::visit_type_path_mut(self, path);
    }

    fn visit_expr_path_mut(&mut self, path: &mut syn::ExprPath) {
        // `[u8; Self::N]`
        if path
            .path
            .segments
            .first()
            .is_some_and(|s| s.ident == "Self")
        {
            self.passes = false;
        }
        visit_mut::visit_expr_path_mut(self, path);
    }

    fn visit_type_reference_mut(&mut self, reference: &mut TypeReference) {
        // async-trait names elided lifetimes in inputs only.
        if reference.lifetime.is_none() && !self.elided_lifetimes_named() {
            self.passes = false;
        }
        visit_mut::visit_type_reference_mut(self, reference);
    }

    fn visit_lifetime_mut(&mut self, lifetime: &mut Lifetime) {
        if lifetime.ident == "_" && !self.elided_lifetimes_named() {
            self.passes = false;
        }
    }
}

impl TypeCheck {
    fn elided_lifetimes_named(&self) -> bool {
        matches!(self.position, Position::Input | Position::Receiver)
    }
}

#[cfg(test)]
mod tests {
    use crate::expand::expand;
    use crate::parse::Item;
    use quote::quote;

    fn expanded(tokens: proc_macro2::TokenStream, is_local: bool) -> String {
        let mut item: Item = syn::parse2(tokens).unwrap();
        expand(&mut item, is_local);
        quote!(#item).to_string()
    }

    #[test]
    fn a_concrete_impl_builds_its_future_in_a_shim_without_where_clauses() {
        let out = expanded(
            quote! {
                impl Scan for MemTable {
                    async fn scan(&self, filters: &[Expr], mut limit: Option<usize>) -> Result<Plan> {
                        limit.take();
                        self.plan(filters).await
                    }
                }
            },
            false,
        );
        let shim = out.split("fn __async_trait_scan").nth(1).expect("a shim");
        let shim_signature = &shim[..shim.find('{').unwrap()];
        assert!(!shim_signature.contains("where"), "{shim_signature}");
        assert!(
            shim_signature.contains("__self : & 'life0 MemTable"),
            "{shim_signature}"
        );
        assert!(
            out.contains("__async_trait_scan (self , filters , limit , &"),
            "{out}"
        );
    }

    #[test]
    fn elided_lifetimes_of_an_impl_header_are_named_for_the_shim() {
        let out = expanded(
            quote! {
                impl ReadOptions<'_> for CsvReadOptions<'_> {
                    async fn schema(&self, state: &State) -> Result<Schema> { todo!() }
                }
            },
            false,
        );
        assert!(
            out.starts_with("impl < '__async_trait_impl0 , '__async_trait_impl1 >"),
            "{out}"
        );
        assert!(out.contains("fn __async_trait_schema"), "{out}");
    }

    #[test]
    fn methods_a_nested_fn_could_not_express_expand_as_before() {
        let cases = [
            (
                quote!(
                    impl<T: Send> Tr for W<T> {
                        async fn f(&self) {}
                    }
                ),
                false,
            ),
            (
                quote!(impl Tr for W { async fn f(&self) { Self::g(); } }),
                false,
            ),
            (
                quote!(impl Tr for W { async fn f(&self) { let _ = Self { x: 1 }; } }),
                false,
            ),
            (
                quote!(impl Tr for W { async fn f(&self) -> Self { todo!() } }),
                false,
            ),
            (
                quote!(impl Tr for W { async fn f(&self) -> &str { todo!() } }),
                false,
            ),
            (
                quote!(impl Tr for W { async fn f<T: Send>(&self, t: T) {} }),
                false,
            ),
            (
                quote!(impl Tr for W { async fn f(&self, &(a, b): &(u8, u8)) {} }),
                false,
            ),
            (
                quote!(impl Tr for W { async fn f(&self, x: impl Send) {} }),
                false,
            ),
            (
                quote!(impl Tr for W { #[instrument] async fn f(&self) {} }),
                false,
            ),
            (
                quote!(impl Tr for dyn Other { async fn f(&self) {} }),
                false,
            ),
            (quote!(impl Tr for W { async fn f(&self) {} }), true),
        ];
        for (tokens, is_local) in cases {
            let out = expanded(tokens.clone(), is_local);
            assert!(!out.contains("__async_trait_f"), "{tokens}\n{out}");
            assert!(out.contains("Box :: pin (async move"), "{tokens}\n{out}");
        }
    }
}
