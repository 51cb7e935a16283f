"""Messages to customers, queued in `notifications` for the sender; one per purpose per order."""

from __future__ import annotations

import base64
import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.contracts import QUEUE_ESIMS_READY
from ttelgo.models import Esim, Notification, NotificationChannel, Order, User
from ttelgo.qr import lpa, qr_png


class NotificationActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name=QUEUE_ESIMS_READY)
    async def esims_ready(self, order_id: uuid.UUID) -> None:
        """The install details by e-mail: LPA string and QR code of each eSIM of a completed order."""
        async with self.sessions() as session, session.begin():
            order = await session.get_one(Order, order_id)
            user = await session.get_one(User, order.user_id)
            esims = await session.scalars(select(Esim).where(Esim.order_id == order_id).order_by(Esim.iccid))
            payload = {
                "order_id": str(order_id),
                "bundle_code": order.bundle_code,
                "esims": [
                    {
                        "iccid": e.iccid,
                        "lpa": lpa(e.smdp_address, e.matching_id),
                        "qr_png_base64": base64.b64encode(
                            qr_png(lpa(e.smdp_address, e.matching_id))
                        ).decode(),
                    }
                    for e in esims
                ],
            }
            await session.execute(
                insert(Notification)
                .values(
                    dedupe_key=f"{order_id}:esims-ready",
                    user_id=user.id,
                    order_id=order_id,
                    channel=NotificationChannel.EMAIL,
                    template="esims_ready",
                    recipient=user.email,
                    payload=payload,
                )
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
            )
