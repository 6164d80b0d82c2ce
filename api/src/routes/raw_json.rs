//! A JSON response body that is already serialised: a cache hit is sent as the bytes Redis
//! returned, while the OpenAPI document still shows the schema of `T`.

use std::marker::PhantomData;

use bytes::Bytes;
use poem::{IntoResponse, Response};
use poem_openapi::{
    ApiResponse,
    payload::Payload,
    registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry},
    types::Type,
};

/// JSON bytes documented as `T`.
pub struct RawJson<T> {
    bytes: Bytes,
    schema: PhantomData<fn() -> T>,
}

impl<T> RawJson<T> {
    pub fn new(bytes: Bytes) -> Self {
        Self {
            bytes,
            schema: PhantomData,
        }
    }
}

impl<T: Type> Payload for RawJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Send> IntoResponse for RawJson<T> {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(<RawJson<()> as PayloadContentType>::CONTENT_TYPE)
            .body(self.bytes)
    }
}

/// The content type without the `Type` bound, for `into_response`.
trait PayloadContentType {
    const CONTENT_TYPE: &'static str;
}

impl PayloadContentType for RawJson<()> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";
}

impl<T: Type> ApiResponse for RawJson<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: Self::CONTENT_TYPE,
                    schema: Self::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}
