//! Copying files in and out of a container, through its gofer.

use actix::prelude::*;
use wire::api::{CopyIn, CopyOut};
use wire::gofer_proto::GoferRequest;
use wire::ApiError;

use super::ContainerActor;
use crate::status::Operation;

impl Handler<CopyOut> for ContainerActor {
    type Result = ResponseFuture<Result<(), ApiError>>;

    fn handle(&mut self, msg: CopyOut, ctx: &mut Context<Self>) -> Self::Result {
        self.gofer_call(ctx, Operation::Copy, GoferRequest::CopyOut { path: msg.path, sink: msg.sink })
    }
}

impl Handler<CopyIn> for ContainerActor {
    type Result = ResponseFuture<Result<(), ApiError>>;

    fn handle(&mut self, msg: CopyIn, ctx: &mut Context<Self>) -> Self::Result {
        self.gofer_call(
            ctx,
            Operation::Copy,
            GoferRequest::CopyIn { path: msg.path, contents: msg.contents, source: msg.source },
        )
    }
}
