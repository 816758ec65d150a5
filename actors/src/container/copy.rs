//! Copying files in and out of a container, through its gofer.

use actix::prelude::*;
use wire::api::{CopyIn, CopyOut};
use wire::gofer_proto::GoferRequest;
use wire::ApiError;

use super::ContainerActor;
use crate::status::Operation;

impl Handler<crate::Api<CopyOut>> for ContainerActor {
    type Result = ResponseFuture<Result<(), ApiError>>;

    fn handle(&mut self, crate::Api(msg): crate::Api<CopyOut>, ctx: &mut Context<Self>) -> Self::Result {
        self.gofer_call(ctx, Operation::Copy, GoferRequest::CopyOut { path: msg.path, sink: msg.sink })
    }
}

impl Handler<crate::Api<CopyIn>> for ContainerActor {
    type Result = ResponseFuture<Result<(), ApiError>>;

    fn handle(&mut self, crate::Api(msg): crate::Api<CopyIn>, ctx: &mut Context<Self>) -> Self::Result {
        self.gofer_call(
            ctx,
            Operation::Copy,
            GoferRequest::CopyIn { path: msg.path, contents: msg.contents, source: msg.source },
        )
    }
}
